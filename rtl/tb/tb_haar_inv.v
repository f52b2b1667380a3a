// tb_haar_inv: drives haar_inv2x2 over a whole multi-level inverse transform from $readmemh vectors.
//
// Input  (+in=FILE):     NC planes of P = HP x WP coefficients in the layout order of DESIGN.md section 2
//                        [LL_L, y2_L, y3_L, y4_L, y2_{L-1}, ..., y4_1], IN_W-bit two's complement hex,
//                        orthonormal units (e.g. the `zero_filled` stage).
// Output (+out=FILE):    NC planes of H x W words (padding cropped), raster order, OUT_W-bit hex.
// Check  (+expect=FILE): same format as +out; prints PASS or FAIL with the mismatch count.
// Always prints "SAT <n>": values clipped to a register, input loads and all levels together.
//
// The unit's registers are REG_W bits (haar.width_bits): each input word is saturated to REG_W as it is
// loaded. Levels run coarsest first; level l (L..1) combines the low band (LL_L at l = L, else the output
// of level l+1) with the detail bands of level l and saturates its outputs to REG_W:
//   per_level (DEFERRED=0): rounding shift right by 1 at every level.
//   deferred  (DEFERRED=1): details shifted left by L-l, exact sums; after level 1 one rounding shift
//                           right by L (haar_round_shift), then saturation to OUT_W.
module tb_haar_inv;
    parameter integer NC          = 1;
    parameter integer H           = 8;
    parameter integer W           = 8;
    parameter integer LEVELS      = 3;
    parameter integer IN_W        = 16;  // input word width
    parameter integer REG_W       = 16;  // Haar register width (haar.width_bits)
    parameter integer OUT_W       = 16;  // output word width
    parameter integer ROUND       = 0;   // 0 half_up, 1 floor, 2 half_even
    parameter integer DEFERRED    = 0;   // 0 per_level, 1 deferred

    localparam integer M  = 1 << LEVELS;
    localparam integer HP = ((H + M - 1) / M) * M;
    localparam integer WP = ((W + M - 1) / M) * M;
    localparam integer P  = HP * WP;
    localparam integer POST_SHIFT = DEFERRED ? LEVELS : 0;

    reg        [IN_W-1:0]  inmem  [0:NC*P-1];
    reg signed [63:0]      coef   [0:NC*P-1];
    reg        [OUT_W-1:0] outmem [0:NC*H*W-1];
    reg        [OUT_W-1:0] expmem [0:NC*H*W-1];
    reg signed [63:0]      lo     [0:NC*P-1];
    reg signed [63:0]      nxt    [0:NC*P-1];

    // Input load saturation, IN_W -> REG_W bits.
    reg  signed [IN_W-1:0]  ld_v;
    wire signed [REG_W-1:0] ld_y;
    wire                    ld_s;
    haar_sat #(.IW(IN_W), .OW(REG_W)) u_load (.v(ld_v), .y(ld_y), .sat(ld_s));

    // Final rounding shift (deferred only) and output saturation, REG_W -> OUT_W bits.
    reg  signed [REG_W-1:0] po_v;
    wire signed [REG_W:0]   po_r;
    wire signed [OUT_W-1:0] po_y;
    wire                    po_s;
    haar_round_shift #(.W(REG_W), .SHIFT(POST_SHIFT), .ROUND(ROUND)) u_post (.v(po_v), .y(po_r));
    haar_sat #(.IW(REG_W + 1), .OW(OUT_W)) u_out (.v(po_r), .y(po_y), .sat(po_s));

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
            localparam integer SHL   = DEFERRED ? LEVELS - g : 0;
            localparam integer SHIFT = DEFERRED ? 0 : 1;
            wire signed [REG_W-1:0] a, b, c, d;
            haar_inv2x2 #(.LO_W(REG_W), .DET_W(REG_W), .DET_SHL(SHL), .OUT_W(REG_W), .SHIFT(SHIFT),
                          .ROUND(ROUND)) u_bf (
                .y1(ly1[REG_W-1:0]), .y2(ly2[REG_W-1:0]), .y3(ly3[REG_W-1:0]), .y4(ly4[REG_W-1:0]),
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
        for (k = 0; k < NC*P; k = k + 1) inmem[k] = {IN_W{1'bx}};
        $readmemh(fin, inmem);
        sats = 0;
        for (k = 0; k < NC*P; k = k + 1) begin
            if (^inmem[k] === 1'bx) begin $display("ERROR input word %0d missing or invalid", k); $finish; end
            ld_v = inmem[k];
            #1;
            coef[k] = ld_y;
            sats = sats + ld_s;
        end
        for (l = LEVELS; l >= 1; l = l - 1) begin
            hi = HP >> l; wi = WP >> l;
            for (n = 0; n < NC; n = n + 1)
                for (i = 0; i < hi; i = i + 1)
                    for (j = 0; j < wi; j = j + 1) begin
                        base = n*P + i*wi + j;
                        ly1 = (l == LEVELS) ? coef[base] : lo[n*hi*wi + i*wi + j];
                        ly2 = coef[base + 1*hi*wi];
                        ly3 = coef[base + 2*hi*wi];
                        ly4 = coef[base + 3*hi*wi];
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
                for (j = 0; j < W; j = j + 1) begin
                    po_v = lo[n*P + i*WP + j];
                    #1;
                    outmem[n*H*W + i*W + j] = po_y;
                    sats = sats + po_s;
                end
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
