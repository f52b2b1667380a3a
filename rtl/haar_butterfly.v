// haar_butterfly: the 2x2 shift-add butterfly shared by the forward and the inverse Haar unit.
//
//   s1 = p+q+r+t,  s2 = p-q+r-t,  s3 = p+q-r-t,  s4 = p-q-r+t        (exact, W + 2 bits)
//   ok = sat_OUT_W( round_shift(sk, SHIFT, ROUND) )
// The forward unit feeds the block [a b; c d] as (p, q, r, t); the inverse feeds the low band and the
// aligned detail bands (y1, e2, e3, e4). ROUND: 0 half_up, 1 floor, 2 half_even (haar_round_shift).
// sat[k-1] is set when ok was clipped to the declared OUT_W-bit register. Combinational, Verilog-2005.
`ifndef HAAR_BUTTERFLY_V
`define HAAR_BUTTERFLY_V
`include "haar_round_shift.v"
`include "haar_sat.v"
module haar_butterfly #(
    parameter integer W     = 8,   // input width, two's complement
    parameter integer OUT_W = 16,  // declared output register width (saturates beyond)
    parameter integer SHIFT = 1,   // rounding right shift after the sums
    parameter integer ROUND = 0    // 0 half_up, 1 floor, 2 half_even
) (
    input  wire signed [W-1:0]     p, q, r, t,
    output wire signed [OUT_W-1:0] o1, o2, o3, o4,
    output wire        [3:0]       sat
);
    localparam integer SW = W + 2;  // exact width of a sum of four W-bit terms
    wire signed [SW-1:0] px = p, qx = q, rx = r, tx = t;  // sign-extended
    wire signed [SW-1:0] s [0:3];
    assign s[0] = px + qx + rx + tx;
    assign s[1] = px - qx + rx - tx;
    assign s[2] = px + qx - rx - tx;
    assign s[3] = px - qx - rx + tx;

    wire signed [SW:0]      rs [0:3];
    wire signed [OUT_W-1:0] o  [0:3];
    genvar k;
    generate
        for (k = 0; k < 4; k = k + 1) begin : g_out
            haar_round_shift #(.W(SW), .SHIFT(SHIFT), .ROUND(ROUND)) u_rs (.v(s[k]), .y(rs[k]));
            haar_sat #(.IW(SW + 1), .OW(OUT_W)) u_sat (.v(rs[k]), .y(o[k]), .sat(sat[k]));
        end
    endgenerate
    assign o1 = o[0];
    assign o2 = o[1];
    assign o3 = o[2];
    assign o4 = o[3];
endmodule
`endif
