// tb_haar_fwd: drives haar_fwd2x2 over a whole multi-level forward transform from $readmemh vectors.
//
// Input  (+in=FILE):     NC planes of H x W words, raster order (plane, row, column), IN_W bits two's
//                        complement (IN_SIGNED=1) or unsigned (IN_SIGNED=0); e.g. the `input_q` stage.
// Output (+out=FILE):    NC planes of P = HP x WP coefficients in the layout order of DESIGN.md section 2
//                        [LL_L, y2_L, y3_L, y4_L, y2_{L-1}, ..., y4_1], each band raster, OUT_W-bit hex.
// Check  (+expect=FILE): same format as +out (e.g. the `haar_coef` stage); prints PASS or FAIL with the
//                        mismatch count. Always prints "SAT <n>": outputs clipped to OUT_W bits.
// H and W are zero-padded up to HP, WP (multiples of 2^LEVELS). Level l reads the low band of level l-1.
module tb_haar_fwd;
    parameter integer NC        = 1;   // planes (batch x channels)
    parameter integer H         = 8;
    parameter integer W         = 8;
    parameter integer LEVELS    = 3;
    parameter integer IN_W      = 8;
    parameter integer IN_SIGNED = 1;
    parameter integer OUT_W     = 16;
    parameter integer SHIFT     = 1;   // 1 per_level, 0 deferred
    parameter integer ROUND     = 0;   // 0 half_up, 1 floor, 2 half_even

    localparam integer M   = 1 << LEVELS;
    localparam integer HP  = ((H + M - 1) / M) * M;
    localparam integer WP  = ((W + M - 1) / M) * M;
    localparam integer P   = HP * WP;
    localparam integer IW1 = IN_W + (IN_SIGNED ? 0 : 1);  // level-1 butterfly input width

    reg        [IN_W-1:0]  inmem  [0:NC*H*W-1];
    reg        [OUT_W-1:0] coef   [0:NC*P-1];
    reg        [OUT_W-1:0] expmem [0:NC*P-1];
    reg signed [63:0]      lo     [0:NC*P-1];
    reg signed [63:0]      nxt    [0:NC*P-1];

    // Level 1 reads input words; levels >= 2 read OUT_W-bit coefficients.
    reg  signed [IW1-1:0]   a1, b1, c1, d1;
    wire signed [OUT_W-1:0] p1, p2, p3, p4;
    wire        [3:0]       ps;
    haar_fwd2x2 #(.IN_W(IW1), .OUT_W(OUT_W), .SHIFT(SHIFT), .ROUND(ROUND)) u_l1 (
        .a(a1), .b(b1), .c(c1), .d(d1), .y1(p1), .y2(p2), .y3(p3), .y4(p4), .sat(ps));
    reg  signed [OUT_W-1:0] an, bn, cn, dn;
    wire signed [OUT_W-1:0] q1, q2, q3, q4;
    wire        [3:0]       qs;
    haar_fwd2x2 #(.IN_W(OUT_W), .OUT_W(OUT_W), .SHIFT(SHIFT), .ROUND(ROUND)) u_ln (
        .a(an), .b(bn), .c(cn), .d(dn), .y1(q1), .y2(q2), .y3(q3), .y4(q4), .sat(qs));

    reg [8*1024-1:0] fin, fout, fexp;
    integer l, n, i, j, hi, wi, ho, wo, base, fd, sats, bad, k;
    reg signed [63:0] v, y1v, y2v, y3v, y4v;
    reg [3:0] sv;

    function signed [63:0] in_word(input integer idx);
        begin
            in_word = IN_SIGNED ? {{(64-IN_W){inmem[idx][IN_W-1]}}, inmem[idx]}
                                : {{(64-IN_W){1'b0}}, inmem[idx]};
        end
    endfunction

    initial begin
        if (!$value$plusargs("in=%s", fin)) begin $display("ERROR missing +in=FILE"); $finish; end
        for (k = 0; k < NC*H*W; k = k + 1) inmem[k] = {IN_W{1'bx}};
        $readmemh(fin, inmem);
        for (k = 0; k < NC*H*W; k = k + 1)
            if (^inmem[k] === 1'bx) begin $display("ERROR input word %0d missing or invalid", k); $finish; end
        // Zero padding to HP x WP.
        for (n = 0; n < NC; n = n + 1)
            for (i = 0; i < HP; i = i + 1)
                for (j = 0; j < WP; j = j + 1)
                    lo[n*P + i*WP + j] = (i < H && j < W) ? in_word(n*H*W + i*W + j) : 64'sd0;
        sats = 0;
        for (l = 1; l <= LEVELS; l = l + 1) begin
            hi = HP >> (l - 1); wi = WP >> (l - 1); ho = hi / 2; wo = wi / 2;
            for (n = 0; n < NC; n = n + 1)
                for (i = 0; i < ho; i = i + 1)
                    for (j = 0; j < wo; j = j + 1) begin
                        base = n*hi*wi + 2*i*wi + 2*j;
                        if (l == 1) begin
                            a1 = lo[base]; b1 = lo[base + 1]; c1 = lo[base + wi]; d1 = lo[base + wi + 1];
                            #1; y1v = p1; y2v = p2; y3v = p3; y4v = p4; sv = ps;
                        end else begin
                            an = lo[base]; bn = lo[base + 1]; cn = lo[base + wi]; dn = lo[base + wi + 1];
                            #1; y1v = q1; y2v = q2; y3v = q3; y4v = q4; sv = qs;
                        end
                        sats = sats + sv[0] + sv[1] + sv[2] + sv[3];
                        nxt[n*ho*wo + i*wo + j] = y1v;
                        coef[n*P + 1*ho*wo + i*wo + j] = y2v[OUT_W-1:0];
                        coef[n*P + 2*ho*wo + i*wo + j] = y3v[OUT_W-1:0];
                        coef[n*P + 3*ho*wo + i*wo + j] = y4v[OUT_W-1:0];
                        if (l == LEVELS) coef[n*P + i*wo + j] = y1v[OUT_W-1:0];
                    end
            for (k = 0; k < NC*ho*wo; k = k + 1) lo[k] = nxt[k];
        end
        $display("SAT %0d", sats);
        if ($value$plusargs("out=%s", fout)) begin
            fd = $fopen(fout, "w");
            for (k = 0; k < NC*P; k = k + 1) $fwrite(fd, "%h\n", coef[k]);
            $fclose(fd);
        end
        if ($value$plusargs("expect=%s", fexp)) begin
            for (k = 0; k < NC*P; k = k + 1) expmem[k] = {OUT_W{1'bx}};
            $readmemh(fexp, expmem);
            bad = 0;
            for (k = 0; k < NC*P; k = k + 1)
                if (expmem[k] !== coef[k]) begin
                    if (bad < 5) $display("MISMATCH word %0d: rtl %h expected %h", k, coef[k], expmem[k]);
                    bad = bad + 1;
                end
            if (bad == 0) $display("PASS %0d words", NC*P);
            else $display("FAIL %0d mismatches of %0d words", bad, NC*P);
        end
        $finish;
    end
endmodule
