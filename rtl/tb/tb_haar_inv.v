// tb_haar_inv: drives haar_inv2x2 over a whole multi-level inverse transform from $readmemh vectors.
//
// Input  (+in=FILE):     NC planes of P = HP x WP coefficients in the layout order of DESIGN.md section 2
//                        [LL_L, y2_L, y3_L, y4_L, y2_{L-1}, ..., y4_1], IN_W-bit two's complement hex.
// Output (+out=FILE):    NC planes of H x W words (padding cropped), raster order, OUT_W-bit hex.
// Check  (+expect=FILE): same format as +out; prints PASS or FAIL with the mismatch count.
// Always prints "SAT <n>": outputs clipped to their register width, all levels together.
//
// Levels run coarsest first. Level l (L..1) combines the low band (LL_L at l = L, else the output of
// level l+1, held in MID_W-bit registers) with the detail bands of level l:
//   per_level (DEFERRED=0): DET_SHL = 0, rounding shift by 1 at every level.
//   deferred  (DEFERRED=1): DET_SHL = DSTEP*(L-l), exact sums, rounding shift by FINAL_SHIFT at l = 1.
// Level 1 writes OUT_W-bit outputs, the other levels MID_W-bit intermediates.
module tb_haar_inv;
    parameter integer NC          = 1;
    parameter integer H           = 8;
    parameter integer W           = 8;
    parameter integer LEVELS      = 3;
    parameter integer IN_W        = 16;
    parameter integer MID_W       = 16;
    parameter integer OUT_W       = 16;
    parameter integer ROUND       = 0;   // 0 half_up, 1 floor, 2 half_even
    parameter integer DEFERRED    = 0;   // 0 per_level, 1 deferred
    parameter integer DSTEP       = 2;   // deferred: detail alignment shift per level of depth
    parameter integer FINAL_SHIFT = 0;   // deferred: rounding shift after the finest level

    localparam integer M  = 1 << LEVELS;
    localparam integer HP = ((H + M - 1) / M) * M;
    localparam integer WP = ((W + M - 1) / M) * M;
    localparam integer P  = HP * WP;

    reg        [IN_W-1:0]  coef   [0:NC*P-1];
    reg        [OUT_W-1:0] outmem [0:NC*H*W-1];
    reg        [OUT_W-1:0] expmem [0:NC*H*W-1];
    reg signed [63:0]      lo     [0:NC*P-1];
    reg signed [63:0]      nxt    [0:NC*P-1];

    // One butterfly per level (their parameters differ); all share the input registers.
    reg  signed [63:0] ly1, ly2, ly3, ly4;
    wire signed [63:0] oa [1:LEVELS];
    wire signed [63:0] ob [1:LEVELS];
    wire signed [63:0] oc [1:LEVELS];
    wire signed [63:0] od [1:LEVELS];
    wire        [3:0]  os [1:LEVELS];
    genvar g;
    generate
        for (g = 1; g <= LEVELS; g = g + 1) begin : g_lvl
            localparam integer LO_W  = (g == LEVELS) ? IN_W : MID_W;
            localparam integer OW    = (g == 1) ? OUT_W : MID_W;
            localparam integer SHL   = DEFERRED ? DSTEP * (LEVELS - g) : 0;
            localparam integer SHIFT = DEFERRED ? ((g == 1) ? FINAL_SHIFT : 0) : 1;
            wire signed [OW-1:0] a, b, c, d;
            haar_inv2x2 #(.LO_W(LO_W), .DET_W(IN_W), .DET_SHL(SHL), .OUT_W(OW), .SHIFT(SHIFT),
                          .ROUND(ROUND)) u_bf (
                .y1(ly1[LO_W-1:0]), .y2(ly2[IN_W-1:0]), .y3(ly3[IN_W-1:0]), .y4(ly4[IN_W-1:0]),
                .a(a), .b(b), .c(c), .d(d), .sat(os[g]));
            assign oa[g] = a;
            assign ob[g] = b;
            assign oc[g] = c;
            assign od[g] = d;
        end
    endgenerate

    reg [8*1024-1:0] fin, fout, fexp;
    integer l, n, i, j, hi, wi, base, obase, fd, sats, bad, k;
    reg [3:0] sv;

    initial begin
        if (!$value$plusargs("in=%s", fin)) begin $display("ERROR missing +in=FILE"); $finish; end
        for (k = 0; k < NC*P; k = k + 1) coef[k] = {IN_W{1'bx}};
        $readmemh(fin, coef);
        for (k = 0; k < NC*P; k = k + 1)
            if (^coef[k] === 1'bx) begin $display("ERROR input word %0d missing or invalid", k); $finish; end
        sats = 0;
        for (l = LEVELS; l >= 1; l = l - 1) begin
            hi = HP >> l; wi = WP >> l;
            for (n = 0; n < NC; n = n + 1)
                for (i = 0; i < hi; i = i + 1)
                    for (j = 0; j < wi; j = j + 1) begin
                        base = n*P + i*wi + j;
                        ly1 = (l == LEVELS) ? $signed(coef[base]) : lo[n*hi*wi + i*wi + j];
                        ly2 = $signed(coef[base + 1*hi*wi]);
                        ly3 = $signed(coef[base + 2*hi*wi]);
                        ly4 = $signed(coef[base + 3*hi*wi]);
                        #1;
                        sv = os[l];
                        sats = sats + sv[0] + sv[1] + sv[2] + sv[3];
                        obase = n*4*hi*wi + 2*i*2*wi + 2*j;
                        nxt[obase]            = oa[l];
                        nxt[obase + 1]        = ob[l];
                        nxt[obase + 2*wi]     = oc[l];
                        nxt[obase + 2*wi + 1] = od[l];
                    end
            for (k = 0; k < NC*4*hi*wi; k = k + 1) lo[k] = nxt[k];
        end
        for (n = 0; n < NC; n = n + 1)
            for (i = 0; i < H; i = i + 1)
                for (j = 0; j < W; j = j + 1)
                    outmem[n*H*W + i*W + j] = lo[n*P + i*WP + j];
        $display("SAT %0d", sats);
        if ($value$plusargs("out=%s", fout)) begin
            fd = $fopen(fout, "w");
            for (k = 0; k < NC*H*W; k = k + 1) $fwrite(fd, "%h\n", outmem[k]);
            $fclose(fd);
        end
        if ($value$plusargs("expect=%s", fexp)) begin
            for (k = 0; k < NC*H*W; k = k + 1) expmem[k] = {OUT_W{1'bx}};
            $readmemh(fexp, expmem);
            bad = 0;
            for (k = 0; k < NC*H*W; k = k + 1)
                if (expmem[k] !== outmem[k]) begin
                    if (bad < 5) $display("MISMATCH word %0d: rtl %h expected %h", k, outmem[k], expmem[k]);
                    bad = bad + 1;
                end
            if (bad == 0) $display("PASS %0d words", NC*H*W);
            else $display("FAIL %0d mismatches of %0d words", bad, NC*H*W);
        end
        $finish;
    end
endmodule
