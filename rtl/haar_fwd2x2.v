// haar_fwd2x2: one 2x2 block of the forward shift-add Haar unit (DESIGN.md section 2, step 2).
//
// For the block [a b; c d] (a top-left, b top-right, c bottom-left, d bottom-right):
//   s1 = a+b+c+d,  s2 = a-b+c-d,  s3 = a+b-c-d,  s4 = a-b-c+d        (exact, IN_W + 2 bits)
//   yk = sat_OUT_W( round_shift(sk, SHIFT, ROUND) )
// SHIFT = 1 is the `per_level` normalization (orthonormal up to rounding), SHIFT = 0 is `deferred`
// (exact). ROUND: 0 half_up, 1 floor, 2 half_even (see haar_round_shift). sat[k-1] is set when yk was
// clipped to the declared OUT_W-bit register. Combinational, synthesizable Verilog-2005.
`ifndef HAAR_FWD2X2_V
`define HAAR_FWD2X2_V
`include "haar_butterfly.v"
module haar_fwd2x2 #(
    parameter integer IN_W  = 8,   // input word width, two's complement
    parameter integer OUT_W = 16,  // declared coefficient register width (saturates beyond)
    parameter integer SHIFT = 1,   // 1 per_level, 0 deferred
    parameter integer ROUND = 0    // 0 half_up, 1 floor, 2 half_even
) (
    input  wire signed [IN_W-1:0]  a, b, c, d,
    output wire signed [OUT_W-1:0] y1, y2, y3, y4,
    output wire        [3:0]       sat
);
    haar_butterfly #(.W(IN_W), .OUT_W(OUT_W), .SHIFT(SHIFT), .ROUND(ROUND)) u_bf (
        .p(a), .q(b), .r(c), .t(d), .o1(y1), .o2(y2), .o3(y3), .o4(y4), .sat(sat));
endmodule
`endif
