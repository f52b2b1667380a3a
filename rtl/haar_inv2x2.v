// haar_inv2x2: one 2x2 block of the inverse shift-add Haar unit (DESIGN.md section 2, step 7).
//
// From the low band y1 and the detail bands y2, y3, y4 of one level:
//   ek = yk << DET_SHL  for k = 2, 3, 4   (aligns detail bands to the low band's units; 0 for per_level)
//   sa = y1+e2+e3+e4,  sb = y1-e2+e3-e4,  sc = y1+e2-e3-e4,  sd = y1-e2-e3+e4      (exact)
//   out = sat_OUT_W( round_shift(s, SHIFT, ROUND) )
// and [a b; c d] is the reconstructed 2x2 block of the next finer band. per_level uses DET_SHL = 0 and
// SHIFT = 1 at every level; deferred uses exact sums (SHIFT = 0) and the whole rounding shift on the
// last (finest) level. sat[k] flags outputs a, b, c, d clipped to OUT_W bits. Combinational, Verilog-2005.
`ifndef HAAR_INV2X2_V
`define HAAR_INV2X2_V
`include "haar_butterfly.v"
module haar_inv2x2 #(
    parameter integer LO_W    = 16,  // width of the low band input y1
    parameter integer DET_W   = 16,  // width of the detail inputs y2..y4
    parameter integer DET_SHL = 0,   // left shift of the details before the sums
    parameter integer OUT_W   = 16,  // declared output register width (saturates beyond)
    parameter integer SHIFT   = 1,   // rounding right shift after the sums
    parameter integer ROUND   = 0    // 0 half_up, 1 floor, 2 half_even
) (
    input  wire signed [LO_W-1:0]  y1,
    input  wire signed [DET_W-1:0] y2, y3, y4,
    output wire signed [OUT_W-1:0] a, b, c, d,
    output wire        [3:0]       sat
);
    localparam integer EW = DET_W + DET_SHL;
    localparam integer W = (LO_W > EW) ? LO_W : EW;  // common width of the butterfly inputs
    wire signed [W-1:0] l  = y1;
    wire signed [W-1:0] e2 = y2 <<< DET_SHL;
    wire signed [W-1:0] e3 = y3 <<< DET_SHL;
    wire signed [W-1:0] e4 = y4 <<< DET_SHL;
    haar_butterfly #(.W(W), .OUT_W(OUT_W), .SHIFT(SHIFT), .ROUND(ROUND)) u_bf (
        .p(l), .q(e2), .r(e3), .t(e4), .o1(a), .o2(b), .o3(c), .o4(d), .sat(sat));
endmodule
`endif
