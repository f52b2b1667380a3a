// haar_sat: saturate a signed IW-bit value to a signed OW-bit register.
//
//   y = min(max(v, -2^(OW-1)), 2^(OW-1) - 1);  sat = (y != v)
//
// When IW <= OW the value always fits: y is v sign-extended and sat is 0. Combinational, Verilog-2005.
`ifndef HAAR_SAT_V
`define HAAR_SAT_V
module haar_sat #(
    parameter integer IW = 18,
    parameter integer OW = 16
) (
    input  wire signed [IW-1:0] v,
    output wire signed [OW-1:0] y,
    output wire                 sat
);
    generate
        if (IW <= OW) begin : g_fits
            assign y   = v;  // signed: sign-extended
            assign sat = 1'b0;
        end else begin : g_clip
            // v fits iff its top IW-OW+1 bits are all equal to the sign bit.
            wire [IW-OW:0] top = v[IW-1:OW-1];
            wire fits = (top == {(IW-OW+1){1'b0}}) | (top == {(IW-OW+1){1'b1}});
            assign sat = ~fits;
            assign y   = fits ? v[OW-1:0]
                              : (v[IW-1] ? {1'b1, {(OW-1){1'b0}}} : {1'b0, {(OW-1){1'b1}}});
        end
    endgenerate
endmodule
`endif
