// haar_round_shift: arithmetic right shift of a signed value by SHIFT bits with a rounding rule.
//
//   q = floor(v / 2^SHIFT),  r = v - q * 2^SHIFT  (0 <= r < 2^SHIFT),  h = 2^(SHIFT-1)
//   ROUND = 0 half_up   : y = q + (r >= h)             == (v + h) >> SHIFT
//   ROUND = 1 floor     : y = q                         == v >> SHIFT
//   ROUND = 2 half_even : y = q + (r > h | (r == h & q odd))   (ties to even)
//   SHIFT = 0           : y = v (exact, no rounding)
//
// Width: the output is W + 1 bits wide, enough for every case (q + 1 cannot overflow it); it is never
// saturated here (see haar_sat). Purely combinational, synthesizable Verilog-2005.
`ifndef HAAR_ROUND_SHIFT_V
`define HAAR_ROUND_SHIFT_V
module haar_round_shift #(
    parameter integer W     = 16,  // input width, two's complement
    parameter integer SHIFT = 1,   // right shift amount in bits, >= 0
    parameter integer ROUND = 0    // 0 half_up, 1 floor, 2 half_even
) (
    input  wire signed [W-1:0] v,
    output wire signed [W:0]   y
);
    generate
        if (SHIFT == 0) begin : g_pass
            assign y = {v[W-1], v};
        end else begin : g_shift
            wire signed [W:0]       vx = {v[W-1], v};
            wire signed [W:0]       q  = vx >>> SHIFT;
            wire        [SHIFT-1:0] r  = v[SHIFT-1:0];
            wire        [SHIFT-1:0] h  = 1 << (SHIFT - 1);
            wire up = (ROUND == 0) ? (r >= h) :
                      (ROUND == 2) ? ((r > h) | ((r == h) & q[0])) : 1'b0;
            assign y = q + {{W{1'b0}}, up};
        end
    endgenerate
endmodule
`endif
