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
`include "haar_round_shift.v"
`include "haar_sat.v"
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
    localparam integer SW = IN_W + 2;  // exact width of a sum of four IN_W-bit terms
    wire signed [SW-1:0] ax = a, bx = b, cx = c, dx = d;  // sign-extended
    wire signed [SW-1:0] s [0:3];
    assign s[0] = ax + bx + cx + dx;
    assign s[1] = ax - bx + cx - dx;
    assign s[2] = ax + bx - cx - dx;
    assign s[3] = ax - bx - cx + dx;

    wire signed [SW:0]      r [0:3];
    wire signed [OUT_W-1:0] y [0:3];
    genvar k;
    generate
        for (k = 0; k < 4; k = k + 1) begin : g_out
            haar_round_shift #(.W(SW), .SHIFT(SHIFT), .ROUND(ROUND)) u_rs (.v(s[k]), .y(r[k]));
            haar_sat #(.IW(SW + 1), .OW(OUT_W)) u_sat (.v(r[k]), .y(y[k]), .sat(sat[k]));
        end
    endgenerate
    assign y1 = y[0];
    assign y2 = y[1];
    assign y3 = y[2];
    assign y4 = y[3];
endmodule
`endif
