/*
 * deephash.index._hamming: exact Hamming k-NN, radius lookup and a no-top-k "ceiling" pass
 * over binary codes.
 *
 * Database layout ("interleaved"): codes are split into W = ceil(n_bits / 64) little-endian
 * 64-bit words (zero-padded), and stored in groups of 8 rows, word-major inside a group:
 *     layout[g][w][j] = word w of row 8*g + j          (uint64, ngroups * W * 8 words)
 * so one 512-bit load holds word w of 8 consecutive rows and any W is handled by one loop.
 * Rows past n in the last group are ignored (masked).
 *
 * k-NN: the database is scanned in blocks that stay in L2 while a batch of queries runs over
 * them (each code is read from memory once per query batch, not once per query). Each query
 * keeps a candidate buffer in row order plus a histogram of its distances (distances are
 * integers in [0, n_bits]); once the buffer holds >= k candidates the acceptance bound drops
 * to the smallest t with count(d <= t) >= k, and only d < t is accepted from then on (a later
 * row at distance t loses the tie to the earlier ones). The final answer is a stable counting
 * sort by distance, so ties come out by row. k may be anything up to n (and beyond: padding).
 *
 * A second layout, "byte-sliced" (uint8: byte b of 32 consecutive rows stored together), serves the
 * AVX2 path for codes of at most 128 bits (see bs_scan); the Python searcher picks the layout.
 *
 * CPU dispatch at run time: AVX-512 VPOPCNTDQ, AVX2 (nibble-table popcount), scalar POPCNT,
 * and a plain C path (SWAR popcount) that every compiler builds; every entry point takes isa= to
 * run a named path. Target attributes are used instead of -march so one build runs anywhere.
 * The GIL is released; n_threads > 1 splits the queries over pthreads.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#define NPY_NO_DEPRECATED_API NPY_1_7_API_VERSION
#include <numpy/arrayobject.h>

#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
#define DH_X86 1
#include <immintrin.h>
#else
#define DH_X86 0
#endif

#define DH_ALWAYS_INLINE static inline __attribute__((always_inline))

enum { ISA_GENERIC = 0, ISA_POPCNT = 1, ISA_AVX2 = 2, ISA_AVX512 = 3, ISA_COUNT = 4 };
static const char *ISA_NAMES[ISA_COUNT] = {"generic", "popcnt", "avx2", "avx512"};

/* ----------------------------------------------------------------------------------------- */
/* per-query top-k state                                                                     */

typedef struct {
    int64_t *rows;    /* candidate rows, in scan (= row) order */
    uint16_t *dist;   /* their distances */
    int32_t *hist;    /* hist[d] = candidates in the buffer at distance d */
    int64_t len;      /* candidates in the buffer */
    int64_t added;    /* accepted since the last tightening */
    uint32_t bound;   /* accept d < bound */
} qstate;

typedef struct {
    const uint64_t *layout;
    int64_t n;          /* database rows */
    int64_t ngroups;    /* ceil(n / 8) */
    int W;              /* 64-bit words per code */
    int n_bits;
    const uint64_t *queries; /* (nq, W) */
    int64_t q0, q1;     /* this worker's query range */
    int64_t k;          /* requested k */
    int64_t kk;         /* min(k, n) */
    int64_t block_groups;
    int64_t qbatch;
    int isa;
    int mode;           /* 0 knn, 1 radius, 2 ceiling */
    uint32_t radius;
    /* knn outputs */
    int32_t *outD;
    int64_t *outI;
    /* radius outputs: per query growable arrays */
    int64_t **r_rows;
    uint16_t **r_dist;
    int64_t *r_len;
    /* ceiling outputs */
    int64_t *sums;
    int ceil_qr;        /* ceiling: queries per database load (1, or 4 on AVX-512) */
    int qr;             /* k-NN / radius: queries per database load (1, or 4 on AVX-512) */
    int prior;          /* k-NN: estimate a starting bound from a 1/16 sample first */
    int failed;         /* set on allocation failure */
    const uint8_t *bsl; /* AVX2 byte-sliced layout (k-NN / radius, n_bits <= 128), else NULL */
    int nb;             /* bytes per code */
} job_t;

/* ----------------------------------------------------------------------------------------- */
/* accepting a candidate                                                                     */

typedef struct {
    qstate *st;
    int64_t cap;        /* knn: buffer capacity; radius: grows */
    int grow;           /* radius mode: buffers grow instead of being compacted */
    int failed;
} sink_t;

static int grow_state(qstate *st, int64_t *cap) {
    int64_t nc = (*cap) * 2 + 1024;
    int64_t *r = (int64_t *)realloc(st->rows, (size_t)nc * sizeof(int64_t));
    if (!r) return -1;
    st->rows = r;
    uint16_t *d = (uint16_t *)realloc(st->dist, (size_t)nc * sizeof(uint16_t));
    if (!d) return -1;
    st->dist = d;
    *cap = nc;
    return 0;
}

DH_ALWAYS_INLINE void push(sink_t *s, int64_t row, uint32_t d) {
    qstate *st = s->st;
    if (s->grow && st->len >= s->cap) {
        if (grow_state(st, &s->cap)) { s->failed = 1; return; }
    }
    st->rows[st->len] = row;
    st->dist[st->len] = (uint16_t)d;
    st->hist[d]++;
    st->len++;
    st->added++;
}

/* smallest t with count(d <= t) >= kk (the buffer must hold >= kk candidates) */
static uint32_t kth_distance(const qstate *st, int64_t kk) {
    int64_t c = 0;
    uint32_t t = 0;
    for (;; t++) {
        c += st->hist[t];
        if (c >= kk) return t;
    }
}

static void tighten(qstate *st, int64_t kk) {
    if (st->added && st->len >= kk) {
        uint32_t t = kth_distance(st, kk);
        if (t < st->bound) st->bound = t;
    }
    st->added = 0;
}

/* keep every candidate with d < t and the first (kk - count(d < t)) at d == t: len <= kk */
static void compact(qstate *st, int64_t kk) {
    uint32_t t = kth_distance(st, kk);
    int64_t less = 0;
    for (uint32_t d = 0; d < t; d++) less += st->hist[d];
    int64_t need_t = kk - less, j = 0;
    for (int64_t i = 0; i < st->len; i++) {
        uint32_t d = st->dist[i];
        if (d < t || (d == t && need_t > 0)) {
            if (d == t) need_t--;
            st->rows[j] = st->rows[i];
            st->dist[j] = (uint16_t)d;
            j++;
        } else {
            st->hist[d]--;
        }
    }
    st->len = j;
    if (t < st->bound) st->bound = t;
}

/* ----------------------------------------------------------------------------------------- */
/* distance kernels over one block of groups for one query                                   */

static inline uint64_t popcount_swar(uint64_t x) {
    x = x - ((x >> 1) & 0x5555555555555555ULL);
    x = (x & 0x3333333333333333ULL) + ((x >> 2) & 0x3333333333333333ULL);
    x = (x + (x >> 4)) & 0x0F0F0F0F0F0F0F0FULL;
    return (x * 0x0101010101010101ULL) >> 56;
}

/* lanes of the last group that hold real rows */
DH_ALWAYS_INLINE unsigned valid_mask(int64_t g, int64_t n) {
    int64_t left = n - g * 8;
    return left >= 8 ? 0xFFu : ((1u << left) - 1u);
}

/* Scalar body shared by the generic and POPCNT paths (POPCNT: compiled inside a target("popcnt")
 * function so __builtin_popcountll becomes one instruction). MODE 0/1 pushes d < bound, MODE 2
 * sums. */
#define SCALAR_BODY(POP)                                                                       \
    for (int64_t g = g0; g < g1; g++) {                                                        \
        const uint64_t *grp = lay + g * (int64_t)W * 8;                                        \
        uint32_t acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};                                            \
        for (int w = 0; w < W; w++) {                                                          \
            const uint64_t qw = q[w];                                                          \
            for (int j = 0; j < 8; j++) acc[j] += (uint32_t)POP(grp[w * 8 + j] ^ qw);          \
        }                                                                                      \
        unsigned vm = valid_mask(g, n);                                                        \
        if (mode == 2) {                                                                       \
            for (int j = 0; j < 8; j++)                                                        \
                if (vm >> j & 1) *sum += acc[j];                                               \
        } else {                                                                               \
            const uint32_t bound = s->st->bound;                                               \
            for (int j = 0; j < 8; j++)                                                        \
                if (acc[j] < bound && (vm >> j & 1)) push(s, g * 8 + j, acc[j]);               \
        }                                                                                      \
    }

static void scan_generic(const uint64_t *lay, int W, int64_t g0, int64_t g1, int64_t n, const uint64_t *q,
                         int mode, sink_t *s, int64_t *sum) {
    SCALAR_BODY(popcount_swar)
}

#if DH_X86
__attribute__((target("popcnt"))) static void scan_popcnt(const uint64_t *lay, int W, int64_t g0, int64_t g1,
                                                          int64_t n, const uint64_t *q, int mode, sink_t *s,
                                                          int64_t *sum) {
    SCALAR_BODY(__builtin_popcountll)
}

/* AVX2 without a vector popcount: nibble lookup (vpshufb) into byte counts, summed over words in
 * bytes (each byte count <= 8 per word; flushed every 31 words), then vpsadbw to 64-bit lanes.
 * One ymm holds word w of 4 rows: two ymm per group of 8. */
__attribute__((target("avx2,popcnt"))) static void scan_avx2(const uint64_t *lay, int W, int64_t g0, int64_t g1,
                                                             int64_t n, const uint64_t *q, int mode, sink_t *s,
                                                             int64_t *sum) {
    const __m256i lut = _mm256_setr_epi8(0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4, 0, 1, 1, 2, 1, 2, 2, 3, 1,
                                         2, 2, 3, 2, 3, 3, 4);
    const __m256i low = _mm256_set1_epi8(0x0F);
    const __m256i zero = _mm256_setzero_si256();
    __m256i sumv = _mm256_setzero_si256();
    for (int64_t g = g0; g < g1; g++) {
        const uint64_t *grp = lay + g * (int64_t)W * 8;
        __m256i tot_a = zero, tot_b = zero;
        int w = 0;
        while (w < W) {
            int wend = W - w > 31 ? w + 31 : W;
            __m256i ba = zero, bb = zero;
            for (; w < wend; w++) {
                const __m256i qv = _mm256_set1_epi64x((long long)q[w]);
                __m256i xa = _mm256_xor_si256(_mm256_loadu_si256((const __m256i *)(grp + w * 8)), qv);
                __m256i xb = _mm256_xor_si256(_mm256_loadu_si256((const __m256i *)(grp + w * 8 + 4)), qv);
                ba = _mm256_add_epi8(ba, _mm256_add_epi8(_mm256_shuffle_epi8(lut, _mm256_and_si256(xa, low)),
                                                         _mm256_shuffle_epi8(lut, _mm256_and_si256(_mm256_srli_epi16(xa, 4), low))));
                bb = _mm256_add_epi8(bb, _mm256_add_epi8(_mm256_shuffle_epi8(lut, _mm256_and_si256(xb, low)),
                                                         _mm256_shuffle_epi8(lut, _mm256_and_si256(_mm256_srli_epi16(xb, 4), low))));
            }
            tot_a = _mm256_add_epi64(tot_a, _mm256_sad_epu8(ba, zero));
            tot_b = _mm256_add_epi64(tot_b, _mm256_sad_epu8(bb, zero));
        }
        unsigned vm = valid_mask(g, n);
        if (mode == 2) {
            if (vm == 0xFF) {
                sumv = _mm256_add_epi64(sumv, _mm256_add_epi64(tot_a, tot_b));
            } else {
                uint64_t da[8];
                _mm256_storeu_si256((__m256i *)da, tot_a);
                _mm256_storeu_si256((__m256i *)(da + 4), tot_b);
                for (int j = 0; j < 8; j++)
                    if (vm >> j & 1) *sum += (int64_t)da[j];
            }
        } else {
            const __m256i bv = _mm256_set1_epi64x((long long)s->st->bound);
            /* d < bound  <=>  bound > d (signed compare is fine: values are small) */
            unsigned m = (unsigned)_mm256_movemask_pd(_mm256_castsi256_pd(_mm256_cmpgt_epi64(bv, tot_a))) |
                         ((unsigned)_mm256_movemask_pd(_mm256_castsi256_pd(_mm256_cmpgt_epi64(bv, tot_b))) << 4);
            m &= vm;
            if (m) {
                uint64_t da[8];
                _mm256_storeu_si256((__m256i *)da, tot_a);
                _mm256_storeu_si256((__m256i *)(da + 4), tot_b);
                while (m) {
                    int j = __builtin_ctz(m);
                    push(s, g * 8 + j, (uint32_t)da[j]);
                    m &= m - 1;
                }
            }
        }
    }
    if (mode == 2) {
        uint64_t t[4];
        _mm256_storeu_si256((__m256i *)t, sumv);
        *sum += (int64_t)(t[0] + t[1] + t[2] + t[3]);
    }
}

#define DH_STRIP 8 /* groups per strip in the four-query k-NN scans */

/* AVX2, four queries per database load (k-NN and radius). The nibble split of a database vector is
 * shared by the queries: popcount(x ^ q) = lut[lo(x) ^ lo(q)] + lut[hi(x) ^ hi(q)] bytewise, so
 * each query costs xor, xor, two vpshufb, add per vector; the byte counts of the W words are summed,
 * vpsadbw gives each row's distance in a 64-bit lane, and a running vpminuw keeps the strip's
 * minimum (the lane's upper 16-bit parts stay 0). Only a strip whose minimum beats a query's bound
 * is recomputed for that query by scan_avx2 and its rows accepted. */
#define AVX2_TARGET __attribute__((target("avx2,popcnt")))

AVX2_TARGET DH_ALWAYS_INLINE void scan4_avx2_w(const uint64_t *lay, const int W, int64_t g0, int64_t g1, int64_t n,
                                               const uint64_t *q, sink_t **ss) {
    const __m256i lut = _mm256_setr_epi8(0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4, 0, 1, 1, 2, 1, 2, 2, 3, 1,
                                         2, 2, 3, 2, 3, 3, 4);
    const __m256i low = _mm256_set1_epi8(0x0F);
    const __m256i zero = _mm256_setzero_si256();
    const int64_t gfull = n / 8;
    const int64_t g2 = gfull < g1 ? gfull : g1;
    __m256i bnd[4];
    for (int r = 0; r < 4; r++) bnd[r] = _mm256_set1_epi64x((long long)ss[r]->st->bound);
    __m256i qlo[4 * 16], qhi[4 * 16]; /* the queries' nibbles, W <= 16 words here */
    const int Wq = W <= 16 ? W : 16;
    for (int r = 0; r < 4; r++)
        for (int w = 0; w < Wq; w++) {
            const __m256i qv = _mm256_set1_epi64x((long long)q[r * W + w]);
            qlo[r * Wq + w] = _mm256_and_si256(qv, low);
            qhi[r * Wq + w] = _mm256_and_si256(_mm256_srli_epi16(qv, 4), low);
        }
    int64_t g = g0;
    if (W > 16) g = g2; /* very long codes: the per-query scan below */
    for (; g + DH_STRIP <= g2; g += DH_STRIP) {
        const __m256i big = _mm256_set1_epi64x(0xFFFF);
        __m256i mn[4] = {big, big, big, big};
        for (int gg = 0; gg < DH_STRIP; gg++) {
            const uint64_t *grp = lay + (g + gg) * (int64_t)W * 8;
            for (int h = 0; h < 2; h++) { /* rows 0-3, then rows 4-7 of the group */
                __m256i c0 = zero, c1 = zero, c2 = zero, c3 = zero;
                for (int w = 0; w < W; w++) {
                    const __m256i x = _mm256_loadu_si256((const __m256i *)(grp + w * 8 + 4 * h));
                    const __m256i xl = _mm256_and_si256(x, low);
                    const __m256i xh = _mm256_and_si256(_mm256_srli_epi16(x, 4), low);
#define DH_Q(r, c)                                                                                                 \
    {                                                                                                              \
        const __m256i ql = qlo[(r) * Wq + w], qh = qhi[(r) * Wq + w];                                              \
        c = _mm256_add_epi8(c, _mm256_add_epi8(_mm256_shuffle_epi8(lut, _mm256_xor_si256(xl, ql)),                  \
                                               _mm256_shuffle_epi8(lut, _mm256_xor_si256(xh, qh))));                \
    }
                    DH_Q(0, c0) DH_Q(1, c1) DH_Q(2, c2) DH_Q(3, c3)
#undef DH_Q
                }
                mn[0] = _mm256_min_epu16(mn[0], _mm256_sad_epu8(c0, zero));
                mn[1] = _mm256_min_epu16(mn[1], _mm256_sad_epu8(c1, zero));
                mn[2] = _mm256_min_epu16(mn[2], _mm256_sad_epu8(c2, zero));
                mn[3] = _mm256_min_epu16(mn[3], _mm256_sad_epu8(c3, zero));
            }
        }
        for (int r = 0; r < 4; r++)
            if (__builtin_expect(_mm256_movemask_epi8(_mm256_cmpgt_epi16(bnd[r], mn[r])) != 0, 0))
                scan_avx2(lay, W, g, g + DH_STRIP, n, q + r * W, 0, ss[r], NULL);
    }
    if (g < g1)
        for (int r = 0; r < 4; r++) scan_avx2(lay, W, g, g1, n, q + r * W, 0, ss[r], NULL);
}

AVX2_TARGET static void scan4_avx2(const uint64_t *lay, int W, int64_t g0, int64_t g1, int64_t n, const uint64_t *q,
                                   sink_t **ss) {
    switch (W) {
    case 1: scan4_avx2_w(lay, 1, g0, g1, n, q, ss); break;
    case 2: scan4_avx2_w(lay, 2, g0, g1, n, q, ss); break;
    case 4: scan4_avx2_w(lay, 4, g0, g1, n, q, ss); break;
    default: scan4_avx2_w(lay, W, g0, g1, n, q, ss); break;
    }
}

/* The AVX2 ceiling: Harley-Seal carry-save accumulation (Mula, Kurz & Lemire, "Faster population
 * counts using AVX2 instructions") over the XORed database: 16 vectors go through a tree of
 * carry-save adders and only the "sixteens" vector is popcounted (nibble vpshufb + vpsadbw), about
 * 6 vector operations per 256 bits instead of the nibble method's 8. It sums every distance of one
 * query (no per-row distances, no top-k): no search over the same codes can be faster. One
 * iteration covers 64 words = 8 / W groups, so W must divide 8; other W and the tail groups use
 * the nibble pass. */
AVX2_TARGET DH_ALWAYS_INLINE __m256i popcnt256_avx2(__m256i v) {
    const __m256i lut = _mm256_setr_epi8(0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4, 0, 1, 1, 2, 1, 2, 2, 3, 1,
                                         2, 2, 3, 2, 3, 3, 4);
    const __m256i low = _mm256_set1_epi8(0x0F);
    __m256i c = _mm256_add_epi8(_mm256_shuffle_epi8(lut, _mm256_and_si256(v, low)),
                                _mm256_shuffle_epi8(lut, _mm256_and_si256(_mm256_srli_epi16(v, 4), low)));
    return _mm256_sad_epu8(c, _mm256_setzero_si256());
}

#define DH_CSA(h, l, a, b, c)                                                                                      \
    {                                                                                                              \
        const __m256i u_ = _mm256_xor_si256(a, b);                                                                 \
        h = _mm256_or_si256(_mm256_and_si256(a, b), _mm256_and_si256(u_, c));                                      \
        l = _mm256_xor_si256(u_, c);                                                                               \
    }

AVX2_TARGET DH_ALWAYS_INLINE void ceiling_hs_avx2_w(const uint64_t *lay, const int W, int64_t g0, int64_t g1, int64_t n,
                                                    const uint64_t *q, int64_t *sum) {
    const int64_t gfull = n / 8 < g1 ? n / 8 : g1;
    const int64_t per = 8 / W; /* groups per 16-vector iteration */
    int64_t units = gfull > g0 ? (gfull - g0) / per : 0;
    __m256i qv[2 * 8];
    for (int i = 0; i < 2 * W; i++) qv[i] = _mm256_set1_epi64x((long long)q[i / 2]);
    const __m256i z = _mm256_setzero_si256();
    __m256i total = z, ones = z, twos = z, fours = z, eights = z, sixteens, twosA, twosB, foursA, foursB, eightsA, eightsB;
    const __m256i *p = (const __m256i *)(lay + g0 * (int64_t)W * 8);
#define DH_D(i) _mm256_xor_si256(_mm256_loadu_si256(p + (i)), qv[(i) % (2 * W)])
    for (int64_t u = 0; u < units; u++, p += 16) {
        DH_CSA(twosA, ones, ones, DH_D(0), DH_D(1))
        DH_CSA(twosB, ones, ones, DH_D(2), DH_D(3))
        DH_CSA(foursA, twos, twos, twosA, twosB)
        DH_CSA(twosA, ones, ones, DH_D(4), DH_D(5))
        DH_CSA(twosB, ones, ones, DH_D(6), DH_D(7))
        DH_CSA(foursB, twos, twos, twosA, twosB)
        DH_CSA(eightsA, fours, fours, foursA, foursB)
        DH_CSA(twosA, ones, ones, DH_D(8), DH_D(9))
        DH_CSA(twosB, ones, ones, DH_D(10), DH_D(11))
        DH_CSA(foursA, twos, twos, twosA, twosB)
        DH_CSA(twosA, ones, ones, DH_D(12), DH_D(13))
        DH_CSA(twosB, ones, ones, DH_D(14), DH_D(15))
        DH_CSA(foursB, twos, twos, twosA, twosB)
        DH_CSA(eightsB, fours, fours, foursA, foursB)
        DH_CSA(sixteens, eights, eights, eightsA, eightsB)
        total = _mm256_add_epi64(total, popcnt256_avx2(sixteens));
    }
#undef DH_D
    total = _mm256_slli_epi64(total, 4);
    total = _mm256_add_epi64(total, _mm256_slli_epi64(popcnt256_avx2(eights), 3));
    total = _mm256_add_epi64(total, _mm256_slli_epi64(popcnt256_avx2(fours), 2));
    total = _mm256_add_epi64(total, _mm256_slli_epi64(popcnt256_avx2(twos), 1));
    total = _mm256_add_epi64(total, popcnt256_avx2(ones));
    uint64_t t[4];
    _mm256_storeu_si256((__m256i *)t, total);
    *sum += (int64_t)(t[0] + t[1] + t[2] + t[3]);
    int64_t gdone = g0 + units * per;
    if (gdone < g1) scan_avx2(lay, W, gdone, g1, n, q, 2, NULL, sum);
}

AVX2_TARGET static void ceiling_hs_avx2(const uint64_t *lay, int W, int64_t g0, int64_t g1, int64_t n,
                                        const uint64_t *q, int64_t *sum) {
    switch (W) {
    case 1: ceiling_hs_avx2_w(lay, 1, g0, g1, n, q, sum); break;
    case 2: ceiling_hs_avx2_w(lay, 2, g0, g1, n, q, sum); break;
    case 4: ceiling_hs_avx2_w(lay, 4, g0, g1, n, q, sum); break;
    case 8: ceiling_hs_avx2_w(lay, 8, g0, g1, n, q, sum); break;
    default: scan_avx2(lay, W, g0, g1, n, q, 2, NULL, sum); break;
    }
}


/* AVX2 k-NN / radius on the "byte-sliced" layout (codes of at most 128 bits): rows are taken in
 * blocks of 32 and a block stores byte b of its 32 rows together,
 *     bslayout[blk][b][j] = byte b of row 32*blk + j          (uint8, nblocks * nb * 32 bytes)
 * so one ymm holds the same byte of 32 rows and a row's distance is a vertical sum: no horizontal
 * reduction. Each query byte is folded into two 16-entry tables, Llo_b[i] = popcount(i ^ lo(q_b))
 * and Lhi_b[i] = popcount(i ^ hi(q_b)), so a query costs two vpshufb and two adds per 32 bytes and
 * no XOR; the nibble split of the database vector is shared by up to four queries. Distances stay
 * in bytes (<= 128). A strip of DH_BS_STRIP blocks keeps each query's byte-wise minimum; only a
 * strip whose minimum beats the query's bound is recomputed and its rows accepted in row order. */
#define DH_BS_STRIP 2

AVX2_TARGET static void bs_tables(const uint64_t *qw, int nb, __m256i *L) {
    const uint8_t *qb = (const uint8_t *)qw;
    for (int b = 0; b < nb; b++) {
        uint8_t lo[32], hi[32];
        for (int i = 0; i < 32; i++) {
            lo[i] = (uint8_t)__builtin_popcount((unsigned)((i & 15) ^ (qb[b] & 15)));
            hi[i] = (uint8_t)__builtin_popcount((unsigned)((i & 15) ^ (qb[b] >> 4)));
        }
        L[2 * b] = _mm256_loadu_si256((const __m256i *)lo);
        L[2 * b + 1] = _mm256_loadu_si256((const __m256i *)hi);
    }
}

/* distances of the 32 rows of block blk to one query (tables L), as bytes */
AVX2_TARGET DH_ALWAYS_INLINE __m256i bs_block(const uint8_t *bl, const int nb, int64_t blk, const __m256i *L) {
    const __m256i low = _mm256_set1_epi8(0x0F);
    const uint8_t *p = bl + blk * (int64_t)nb * 32;
    __m256i acc = _mm256_setzero_si256();
    for (int b = 0; b < nb; b++) {
        const __m256i x = _mm256_loadu_si256((const __m256i *)(p + 32 * b));
        acc = _mm256_add_epi8(acc, _mm256_add_epi8(_mm256_shuffle_epi8(L[2 * b], _mm256_and_si256(x, low)),
                                                   _mm256_shuffle_epi8(L[2 * b + 1],
                                                                       _mm256_and_si256(_mm256_srli_epi16(x, 4), low))));
    }
    return acc;
}

/* accept the rows of block blk (those in rowmask) with distance < the query's bound */
AVX2_TARGET static void bs_accept(const uint8_t *bl, int nb, int64_t blk, const __m256i *L, uint32_t rowmask, sink_t *s) {
    const uint32_t bound = s->st->bound;
    if (bound == 0 || !rowmask) return;
    const __m256i acc = bs_block(bl, nb, blk, L);
    const __m256i bm1 = _mm256_set1_epi8((char)(bound - 1 > 255 ? 255 : bound - 1));
    uint32_t m = (uint32_t)_mm256_movemask_epi8(_mm256_cmpeq_epi8(_mm256_max_epu8(acc, bm1), bm1)) & rowmask;
    if (m) {
        uint8_t d[32];
        _mm256_storeu_si256((__m256i *)d, acc);
        while (m) {
            int j = __builtin_ctz(m);
            push(s, blk * 32 + j, d[j]);
            m &= m - 1;
        }
    }
}

/* rows [r0, r1) (clipped to n) for R queries with tables L[r * 2 * nb ...] */
AVX2_TARGET DH_ALWAYS_INLINE void bs_scan_w(const uint8_t *bl, const int nb, int64_t r0, int64_t r1, int64_t n,
                                            const __m256i *L, const int R, sink_t **ss) {
    const __m256i low = _mm256_set1_epi8(0x0F);
    if (r1 > n) r1 = n;
    if (r0 >= r1) return;
    int64_t b0 = r0 / 32, b1 = (r1 + 31) / 32; /* blocks touched */
    int64_t f0 = (r0 + 31) / 32, f1 = r1 / 32;  /* blocks wholly inside */
    if (f1 < f0) f1 = f0;
    /* partial blocks at the ends */
    for (int64_t blk = b0; blk < f0 && blk < b1; blk++) {
        int64_t lo = r0 > blk * 32 ? r0 - blk * 32 : 0, hi = r1 < blk * 32 + 32 ? r1 - blk * 32 : 32;
        uint32_t rm = (uint32_t)((hi >= 32 ? 0xFFFFFFFFull : ((1ull << hi) - 1)) & ~((1ull << lo) - 1));
        for (int r = 0; r < R; r++) bs_accept(bl, nb, blk, L + r * 2 * nb, rm, ss[r]);
    }
    __m256i bm1[4];
    int live[4];
    for (int r = 0; r < R; r++) {
        uint32_t bd = ss[r]->st->bound;
        live[r] = bd > 0;
        bm1[r] = _mm256_set1_epi8((char)(bd == 0 ? 0 : (bd - 1 > 255 ? 255 : bd - 1)));
    }
    int64_t blk = f0;
    for (; blk + DH_BS_STRIP <= f1; blk += DH_BS_STRIP) {
        __m256i mn[4];
        for (int r = 0; r < R; r++) mn[r] = _mm256_set1_epi8((char)0xFF);
        for (int s = 0; s < DH_BS_STRIP; s++) {
            const uint8_t *p = bl + (blk + s) * (int64_t)nb * 32;
            __m256i acc[4];
            for (int r = 0; r < R; r++) acc[r] = _mm256_setzero_si256();
            for (int b = 0; b < nb; b++) {
                const __m256i x = _mm256_loadu_si256((const __m256i *)(p + 32 * b));
                const __m256i xl = _mm256_and_si256(x, low), xh = _mm256_and_si256(_mm256_srli_epi16(x, 4), low);
                for (int r = 0; r < R; r++)
                    acc[r] = _mm256_add_epi8(acc[r], _mm256_add_epi8(_mm256_shuffle_epi8(L[r * 2 * nb + 2 * b], xl),
                                                                     _mm256_shuffle_epi8(L[r * 2 * nb + 2 * b + 1], xh)));
            }
            for (int r = 0; r < R; r++) mn[r] = _mm256_min_epu8(mn[r], acc[r]);
        }
        for (int r = 0; r < R; r++) {
            if (live[r] && __builtin_expect(_mm256_movemask_epi8(_mm256_cmpeq_epi8(_mm256_max_epu8(mn[r], bm1[r]), bm1[r])) != 0, 0))
                for (int s = 0; s < DH_BS_STRIP; s++) bs_accept(bl, nb, blk + s, L + r * 2 * nb, 0xFFFFFFFFu, ss[r]);
        }
    }
    for (; blk < f1; blk++)
        for (int r = 0; r < R; r++) bs_accept(bl, nb, blk, L + r * 2 * nb, 0xFFFFFFFFu, ss[r]);
    /* the partial block at the end */
    for (int64_t b = f1 > f0 ? f1 : f0; b < b1; b++) {
        if (b < f0) continue; /* already done as a leading partial block */
        int64_t lo = r0 > b * 32 ? r0 - b * 32 : 0, hi = r1 < b * 32 + 32 ? r1 - b * 32 : 32;
        uint32_t rm = (uint32_t)((hi >= 32 ? 0xFFFFFFFFull : ((1ull << hi) - 1)) & ~((1ull << lo) - 1));
        for (int r = 0; r < R; r++) bs_accept(bl, nb, b, L + r * 2 * nb, rm, ss[r]);
    }
}

AVX2_TARGET static void bs_scan(const uint8_t *bl, int nb, int64_t r0, int64_t r1, int64_t n, const __m256i *L, int R,
                                sink_t **ss) {
#define DH_BS_R(NB)                                                                                                \
    switch (R) {                                                                                                   \
    case 4: bs_scan_w(bl, NB, r0, r1, n, L, 4, ss); break;                                                         \
    case 3: bs_scan_w(bl, NB, r0, r1, n, L, 3, ss); break;                                                         \
    case 2: bs_scan_w(bl, NB, r0, r1, n, L, 2, ss); break;                                                         \
    default: bs_scan_w(bl, NB, r0, r1, n, L, 1, ss); break;                                                        \
    }
    switch (nb) {
    case 8: DH_BS_R(8) break;
    case 16: DH_BS_R(16) break;
    default: DH_BS_R(nb) break;
    }
#undef DH_BS_R
}

/* The byte-sliced ceiling: the same table lookups as the byte-sliced k-NN scan (shared nibble split,
 * two vpshufb + two adds per query per 32 bytes) but no bound, minimum or acceptance: each query's
 * distances are summed. The byte counts of up to 255 / (8 * nb) blocks are added in bytes before a
 * vpsadbw folds them into 64-bit lanes. With the Harley-Seal pass it is the AVX2 ceiling: the
 * benchmark takes the faster of the two. */
AVX2_TARGET DH_ALWAYS_INLINE void bs_sum_w(const uint8_t *bl, const int nb, int64_t r0, int64_t r1, int64_t n,
                                           const __m256i *L, const int R, int64_t *sums) {
    const __m256i low = _mm256_set1_epi8(0x0F);
    const __m256i zero = _mm256_setzero_si256();
    if (r1 > n) r1 = n;
    if (r0 >= r1) return;
    int64_t b0 = r0 / 32, b1 = (r1 + 31) / 32;
    int64_t f0 = (r0 + 31) / 32, f1 = r1 / 32;
    if (f1 < f0) f1 = f0;
    /* partial blocks at either end: one query at a time, masked */
    for (int64_t blk = b0; blk < b1; blk++) {
        if (blk >= f0 && blk < f1) continue;
        int64_t lo = r0 > blk * 32 ? r0 - blk * 32 : 0, hi = r1 < blk * 32 + 32 ? r1 - blk * 32 : 32;
        for (int r = 0; r < R; r++) {
            uint8_t d[32];
            _mm256_storeu_si256((__m256i *)d, bs_block(bl, nb, blk, L + r * 2 * nb));
            for (int64_t j = lo; j < hi; j++) sums[r] += d[j];
        }
    }
    const int fold = 255 / (8 * nb) < 1 ? 1 : 255 / (8 * nb);
    __m256i tot[4] = {zero, zero, zero, zero};
    int64_t blk = f0;
    while (blk < f1) {
        const int64_t bend = blk + fold < f1 ? blk + fold : f1;
        __m256i acc[4] = {zero, zero, zero, zero};
        for (; blk < bend; blk++) {
            const uint8_t *p = bl + blk * (int64_t)nb * 32;
            for (int b = 0; b < nb; b++) {
                const __m256i x = _mm256_loadu_si256((const __m256i *)(p + 32 * b));
                const __m256i xl = _mm256_and_si256(x, low), xh = _mm256_and_si256(_mm256_srli_epi16(x, 4), low);
                for (int r = 0; r < R; r++)
                    acc[r] = _mm256_add_epi8(acc[r], _mm256_add_epi8(_mm256_shuffle_epi8(L[r * 2 * nb + 2 * b], xl),
                                                                     _mm256_shuffle_epi8(L[r * 2 * nb + 2 * b + 1], xh)));
            }
        }
        for (int r = 0; r < R; r++) tot[r] = _mm256_add_epi64(tot[r], _mm256_sad_epu8(acc[r], zero));
    }
    for (int r = 0; r < R; r++) {
        uint64_t t[4];
        _mm256_storeu_si256((__m256i *)t, tot[r]);
        sums[r] += (int64_t)(t[0] + t[1] + t[2] + t[3]);
    }
}

AVX2_TARGET static void bs_sum(const uint8_t *bl, int nb, int64_t r0, int64_t r1, int64_t n, const __m256i *L, int R,
                               int64_t *sums) {
#define DH_BS_R(NB)                                                                                                \
    switch (R) {                                                                                                   \
    case 4: bs_sum_w(bl, NB, r0, r1, n, L, 4, sums); break;                                                        \
    case 3: bs_sum_w(bl, NB, r0, r1, n, L, 3, sums); break;                                                        \
    case 2: bs_sum_w(bl, NB, r0, r1, n, L, 2, sums); break;                                                        \
    default: bs_sum_w(bl, NB, r0, r1, n, L, 1, sums); break;                                                       \
    }
    switch (nb) {
    case 8: DH_BS_R(8) break;
    case 16: DH_BS_R(16) break;
    default: DH_BS_R(nb) break;
    }
#undef DH_BS_R
}

/* AVX-512 VPOPCNTDQ: one zmm = word w of the 8 rows of a group; W constant-folded for 1, 2, 4. */
#define AVX512_TARGET __attribute__((target("avx512f,avx512vpopcntdq,popcnt")))

AVX512_TARGET DH_ALWAYS_INLINE __m512i dist8_avx512(const uint64_t *grp, const int W, const uint64_t *q) {
    __m512i acc = _mm512_popcnt_epi64(_mm512_xor_si512(_mm512_loadu_si512(grp), _mm512_set1_epi64((long long)q[0])));
    for (int w = 1; w < W; w++)
        acc = _mm512_add_epi64(acc, _mm512_popcnt_epi64(_mm512_xor_si512(_mm512_loadu_si512(grp + w * 8),
                                                                         _mm512_set1_epi64((long long)q[w]))));
    return acc;
}

AVX512_TARGET DH_ALWAYS_INLINE void accept8(sink_t *s, int64_t g, unsigned m, __m512i a) {
    if (m) {
        uint64_t da[8];
        _mm512_storeu_si512(da, a);
        while (m) {
            int j = __builtin_ctz(m);
            push(s, g * 8 + j, (uint32_t)da[j]);
            m &= m - 1;
        }
    }
}

AVX512_TARGET DH_ALWAYS_INLINE void scan_avx512_w(const uint64_t *lay, const int W, int64_t g0, int64_t g1,
                                                  int64_t n, const uint64_t *q, int mode, sink_t *s,
                                                  int64_t *sum) {
    __m512i sumv = _mm512_setzero_si512();
    if (mode == 2) {
        int64_t gfull = n / 8 < g1 ? n / 8 : g1; /* groups with 8 real rows */
        int64_t g = g0;
        for (; g < gfull; g++) {
            const uint64_t *grp = lay + g * (int64_t)W * 8;
            __m512i acc = _mm512_popcnt_epi64(_mm512_xor_si512(_mm512_loadu_si512(grp), _mm512_set1_epi64((long long)q[0])));
            for (int w = 1; w < W; w++)
                acc = _mm512_add_epi64(acc, _mm512_popcnt_epi64(_mm512_xor_si512(
                                                _mm512_loadu_si512(grp + w * 8), _mm512_set1_epi64((long long)q[w]))));
            sumv = _mm512_add_epi64(sumv, acc);
        }
        for (; g < g1; g++) {
            const uint64_t *grp = lay + g * (int64_t)W * 8;
            __m512i acc = _mm512_setzero_si512();
            for (int w = 0; w < W; w++)
                acc = _mm512_add_epi64(acc, _mm512_popcnt_epi64(_mm512_xor_si512(
                                                _mm512_loadu_si512(grp + w * 8), _mm512_set1_epi64((long long)q[w]))));
            sumv = _mm512_mask_add_epi64(sumv, (__mmask8)valid_mask(g, n), sumv, acc);
        }
        *sum += _mm512_reduce_add_epi64(sumv);
        return;
    }
    const int64_t gfull = n / 8;
    const __m512i bv = _mm512_set1_epi64((long long)s->st->bound); /* fixed during a scan call */
    int64_t g = g0;
    /* four groups (32 rows) per step and one branch: min of the four distance vectors vs bound */
    const int64_t g4 = (gfull < g1 ? gfull : g1);
    for (; g + 4 <= g4; g += 4) {
        const uint64_t *grp = lay + g * (int64_t)W * 8;
        __m512i a0 = dist8_avx512(grp, W, q);
        __m512i a1 = dist8_avx512(grp + W * 8, W, q);
        __m512i a2 = dist8_avx512(grp + 2 * W * 8, W, q);
        __m512i a3 = dist8_avx512(grp + 3 * W * 8, W, q);
        __m512i mn = _mm512_min_epu64(_mm512_min_epu64(a0, a1), _mm512_min_epu64(a2, a3));
        if (__builtin_expect(_mm512_cmplt_epu64_mask(mn, bv) != 0, 0)) {
            accept8(s, g, (unsigned)_mm512_cmplt_epu64_mask(a0, bv), a0);
            accept8(s, g + 1, (unsigned)_mm512_cmplt_epu64_mask(a1, bv), a1);
            accept8(s, g + 2, (unsigned)_mm512_cmplt_epu64_mask(a2, bv), a2);
            accept8(s, g + 3, (unsigned)_mm512_cmplt_epu64_mask(a3, bv), a3);
        }
    }
    for (; g < g1; g++) {
        __m512i a = dist8_avx512(lay + g * (int64_t)W * 8, W, q);
        unsigned m = (unsigned)_mm512_cmplt_epu64_mask(a, bv);
        if (g >= gfull) m &= valid_mask(g, n);
        accept8(s, g, m, a);
    }
}

/* k-NN (and radius) for four queries per load of the database. The hot loop is branch-free: over
 * a strip of 8 groups (64 rows) it keeps, per query, the lane-wise minimum distance (xor, popcnt,
 * min: the same work as the ceiling's xor, popcnt, add); only when a strip's minimum beats a
 * query's bound is the strip recomputed for that query and its rows accepted. */

AVX512_TARGET DH_ALWAYS_INLINE void rescan_avx512(const uint64_t *lay, const int W, int64_t g0, int64_t g1,
                                                  int64_t n, const uint64_t *q, sink_t *s) {
    const int64_t gfull = n / 8;
    const __m512i bv = _mm512_set1_epi64((long long)s->st->bound);
    for (int64_t g = g0; g < g1; g++) {
        __m512i a = dist8_avx512(lay + g * (int64_t)W * 8, W, q);
        unsigned m = (unsigned)_mm512_cmplt_epu64_mask(a, bv);
        if (g >= gfull) m &= valid_mask(g, n);
        accept8(s, g, m, a);
    }
}

AVX512_TARGET DH_ALWAYS_INLINE void scan4_avx512_w(const uint64_t *lay, const int W, int64_t g0, int64_t g1,
                                                   int64_t n, const uint64_t *q, sink_t **ss) {
    const int64_t gfull = n / 8;
    const __m512i b0 = _mm512_set1_epi64((long long)ss[0]->st->bound);
    const __m512i b1 = _mm512_set1_epi64((long long)ss[1]->st->bound);
    const __m512i b2 = _mm512_set1_epi64((long long)ss[2]->st->bound);
    const __m512i b3 = _mm512_set1_epi64((long long)ss[3]->st->bound);
    const int64_t g2 = gfull < g1 ? gfull : g1;
    int64_t g = g0;
    for (; g + DH_STRIP <= g2; g += DH_STRIP) {
        const __m512i big = _mm512_set1_epi64(-1);
        __m512i n0 = big, n1 = big, n2 = big, n3 = big;
        for (int gg = 0; gg < DH_STRIP; gg++) {
            const uint64_t *grp = lay + (g + gg) * (int64_t)W * 8;
            __m512i x = _mm512_loadu_si512(grp);
            __m512i a0 = _mm512_popcnt_epi64(_mm512_xor_si512(x, _mm512_set1_epi64((long long)q[0])));
            __m512i a1 = _mm512_popcnt_epi64(_mm512_xor_si512(x, _mm512_set1_epi64((long long)q[W])));
            __m512i a2 = _mm512_popcnt_epi64(_mm512_xor_si512(x, _mm512_set1_epi64((long long)q[2 * W])));
            __m512i a3 = _mm512_popcnt_epi64(_mm512_xor_si512(x, _mm512_set1_epi64((long long)q[3 * W])));
            for (int w = 1; w < W; w++) {
                x = _mm512_loadu_si512(grp + w * 8);
                a0 = _mm512_add_epi64(a0, _mm512_popcnt_epi64(_mm512_xor_si512(x, _mm512_set1_epi64((long long)q[w]))));
                a1 = _mm512_add_epi64(a1, _mm512_popcnt_epi64(_mm512_xor_si512(x, _mm512_set1_epi64((long long)q[W + w]))));
                a2 = _mm512_add_epi64(a2, _mm512_popcnt_epi64(_mm512_xor_si512(x, _mm512_set1_epi64((long long)q[2 * W + w]))));
                a3 = _mm512_add_epi64(a3, _mm512_popcnt_epi64(_mm512_xor_si512(x, _mm512_set1_epi64((long long)q[3 * W + w]))));
            }
            n0 = _mm512_min_epu64(n0, a0);
            n1 = _mm512_min_epu64(n1, a1);
            n2 = _mm512_min_epu64(n2, a2);
            n3 = _mm512_min_epu64(n3, a3);
        }
        if (__builtin_expect(_mm512_cmplt_epu64_mask(n0, b0) != 0, 0)) rescan_avx512(lay, W, g, g + DH_STRIP, n, q, ss[0]);
        if (__builtin_expect(_mm512_cmplt_epu64_mask(n1, b1) != 0, 0)) rescan_avx512(lay, W, g, g + DH_STRIP, n, q + W, ss[1]);
        if (__builtin_expect(_mm512_cmplt_epu64_mask(n2, b2) != 0, 0)) rescan_avx512(lay, W, g, g + DH_STRIP, n, q + 2 * W, ss[2]);
        if (__builtin_expect(_mm512_cmplt_epu64_mask(n3, b3) != 0, 0)) rescan_avx512(lay, W, g, g + DH_STRIP, n, q + 3 * W, ss[3]);
    }
    if (g < g1) {
        for (int r = 0; r < 4; r++) rescan_avx512(lay, W, g, g1, n, q + r * W, ss[r]);
    }
}

AVX512_TARGET static void scan4_avx512(const uint64_t *lay, int W, int64_t g0, int64_t g1, int64_t n,
                                       const uint64_t *q, sink_t **ss) {
    switch (W) {
    case 1: scan4_avx512_w(lay, 1, g0, g1, n, q, ss); break;
    case 2: scan4_avx512_w(lay, 2, g0, g1, n, q, ss); break;
    case 4: scan4_avx512_w(lay, 4, g0, g1, n, q, ss); break;
    default: scan4_avx512_w(lay, W, g0, g1, n, q, ss); break;
    }
}

/* ceiling, four queries per load of the database (register blocking over queries) */
AVX512_TARGET DH_ALWAYS_INLINE void ceiling4_avx512_w(const uint64_t *lay, const int W, int64_t g0, int64_t g1,
                                                      int64_t n, const uint64_t *q, int64_t *sums) {
    __m512i s0 = _mm512_setzero_si512(), s1 = s0, s2 = s0, s3 = s0;
    int64_t gfull = n / 8 < g1 ? n / 8 : g1;
    int64_t g = g0;
    for (; g < gfull; g++) {
        const uint64_t *grp = lay + g * (int64_t)W * 8;
        for (int w = 0; w < W; w++) {
            __m512i x = _mm512_loadu_si512(grp + w * 8);
            s0 = _mm512_add_epi64(s0, _mm512_popcnt_epi64(_mm512_xor_si512(x, _mm512_set1_epi64((long long)q[w]))));
            s1 = _mm512_add_epi64(s1, _mm512_popcnt_epi64(_mm512_xor_si512(x, _mm512_set1_epi64((long long)q[W + w]))));
            s2 = _mm512_add_epi64(s2, _mm512_popcnt_epi64(_mm512_xor_si512(x, _mm512_set1_epi64((long long)q[2 * W + w]))));
            s3 = _mm512_add_epi64(s3, _mm512_popcnt_epi64(_mm512_xor_si512(x, _mm512_set1_epi64((long long)q[3 * W + w]))));
        }
    }
    sums[0] += _mm512_reduce_add_epi64(s0);
    sums[1] += _mm512_reduce_add_epi64(s1);
    sums[2] += _mm512_reduce_add_epi64(s2);
    sums[3] += _mm512_reduce_add_epi64(s3);
    for (; g < g1; g++) { /* the partial last group */
        const uint64_t *grp = lay + g * (int64_t)W * 8;
        for (int i = 0; i < 4; i++) {
            __m512i a = dist8_avx512(grp, W, q + i * W);
            sums[i] += _mm512_reduce_add_epi64(_mm512_maskz_mov_epi64((__mmask8)valid_mask(g, n), a));
        }
    }
}

AVX512_TARGET static void ceiling4_avx512(const uint64_t *lay, int W, int64_t g0, int64_t g1, int64_t n,
                                          const uint64_t *q, int64_t *sums) {
    switch (W) {
    case 1: ceiling4_avx512_w(lay, 1, g0, g1, n, q, sums); break;
    case 2: ceiling4_avx512_w(lay, 2, g0, g1, n, q, sums); break;
    default: ceiling4_avx512_w(lay, W, g0, g1, n, q, sums); break;
    }
}

AVX512_TARGET static void scan_avx512(const uint64_t *lay, int W, int64_t g0, int64_t g1, int64_t n,
                                      const uint64_t *q, int mode, sink_t *s, int64_t *sum) {
    switch (W) {
    case 1: scan_avx512_w(lay, 1, g0, g1, n, q, mode, s, sum); break;
    case 2: scan_avx512_w(lay, 2, g0, g1, n, q, mode, s, sum); break;
    case 4: scan_avx512_w(lay, 4, g0, g1, n, q, mode, s, sum); break;
    default: scan_avx512_w(lay, W, g0, g1, n, q, mode, s, sum); break;
    }
}
#endif /* DH_X86 */

typedef void (*scan_fn)(const uint64_t *, int, int64_t, int64_t, int64_t, const uint64_t *, int, sink_t *, int64_t *);

static scan_fn scan_for(int isa) {
#if DH_X86
    switch (isa) {
    case ISA_AVX512: return scan_avx512;
    case ISA_AVX2: return scan_avx2;
    case ISA_POPCNT: return scan_popcnt;
    default: return scan_generic;
    }
#else
    (void)isa;
    return scan_generic;
#endif
}

static int isa_supported(int isa) {
#if DH_X86
    __builtin_cpu_init();
    switch (isa) {
    case ISA_GENERIC: return 1;
    case ISA_POPCNT: return __builtin_cpu_supports("popcnt") != 0;
    case ISA_AVX2: return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("popcnt");
    case ISA_AVX512: return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vpopcntdq");
    default: return 0;
    }
#else
    return isa == ISA_GENERIC;
#endif
}

static int best_isa(void) {
    for (int i = ISA_COUNT - 1; i > 0; i--)
        if (isa_supported(i)) return i;
    return ISA_GENERIC;
}

/* ----------------------------------------------------------------------------------------- */
/* drivers                                                                                   */

static void write_knn(const qstate *st, int64_t kk, int64_t k, int n_bits, int32_t *Dout, int64_t *Iout, int64_t *off) {
    int64_t outn = st->len < kk ? st->len : kk;
    uint32_t t = (uint32_t)n_bits;
    if (st->len >= kk && kk > 0) t = kth_distance(st, kk);
    int64_t pos = 0;
    for (uint32_t d = 0; d <= t; d++) {
        off[d] = pos;
        pos += st->hist[d];
    }
    int64_t less = t > 0 ? off[t] : 0; /* candidates strictly below t */
    int64_t need_t = outn - less;
    for (int64_t i = 0; i < st->len; i++) {
        uint32_t d = st->dist[i];
        if (d > t) continue;
        if (d == t) {
            if (need_t <= 0) continue;
            need_t--;
        }
        int64_t p = off[d]++;
        Dout[p] = (int32_t)d;
        Iout[p] = st->rows[i];
    }
    for (int64_t p = outn; p < k; p++) {
        Dout[p] = n_bits + 1;
        Iout[p] = -1;
    }
}

typedef struct {
    int64_t g0, g1;
} range_t;

/* Run queries [qb, qb + nqb) (states st[0..nqb)) over the group ranges rg[0..nr), keeping the top
 * kk (k-NN), every hit (radius) or the sums (ceiling). In k-NN the first block of a pass is
 * scanned in doubling chunks with a tightening after each, so the bound falls after the first
 * few hundred rows instead of accepting a whole block. Returns -1 on allocation failure. */
static int run_pass(job_t *J, qstate *st, int64_t *caps, int64_t qb, int64_t nqb, const range_t *rg, int64_t nr,
                    int64_t kk) {
    const int W = J->W;
    const scan_fn scan = scan_for(J->isa);
    const int64_t bg = J->block_groups;
    const int64_t brows = bg * 8;
    int first = 1;
#if DH_X86
    if (J->bsl) {
        const int nb = J->nb;
        __m256i *T = (__m256i *)aligned_alloc(32, (size_t)nqb * 2 * nb * 32);
        if (!T) return -1;
        for (int64_t i = 0; i < nqb; i++) bs_tables(J->queries + (qb + i) * W, nb, T + i * 2 * nb);
        if (J->mode == 2) { /* ceiling: a block stays in L2 while the query batch runs over it */
            const int qr = J->ceil_qr == 4 ? 4 : 1;
            for (int64_t r = 0; r < nr; r++)
                for (int64_t g0 = rg[r].g0; g0 < rg[r].g1; g0 += bg) {
                    const int64_t g1 = g0 + bg < rg[r].g1 ? g0 + bg : rg[r].g1;
                    for (int64_t i0 = 0; i0 < nqb; i0 += qr)
                        bs_sum(J->bsl, nb, g0 * 8, g1 * 8, J->n, T + i0 * 2 * nb,
                               nqb - i0 < qr ? (int)(nqb - i0) : qr, &J->sums[qb + i0]);
                }
            free(T);
            return 0;
        }
        for (int64_t r = 0; r < nr; r++) {
            for (int64_t g0 = rg[r].g0; g0 < rg[r].g1; g0 += bg) {
                const int64_t g1 = g0 + bg < rg[r].g1 ? g0 + bg : rg[r].g1;
                const int doubling = J->mode == 0 && first;
                first = 0;
                for (int64_t i0 = 0; i0 < nqb; i0 += 4) {
                    const int R = nqb - i0 < 4 ? (int)(nqb - i0) : 4;
                    int64_t a = g0;
                    while (a < g1) {
                        int64_t b = g1;
                        if (doubling) {
                            int64_t step = a - g0 < 4 ? 4 : a - g0;
                            if (a + step < b) b = a + step;
                        }
                        sink_t s4[4];
                        sink_t *sp[4];
                        for (int r4 = 0; r4 < R; r4++) {
                            qstate *sti = &st[i0 + r4];
                            if (J->mode == 0 && sti->len + brows > caps[i0 + r4]) compact(sti, kk);
                            s4[r4].st = sti;
                            s4[r4].cap = caps[i0 + r4];
                            s4[r4].grow = J->mode == 1;
                            s4[r4].failed = 0;
                            sp[r4] = &s4[r4];
                        }
                        bs_scan(J->bsl, nb, a * 8, b * 8, J->n, T + i0 * 2 * nb, R, sp);
                        for (int r4 = 0; r4 < R; r4++) {
                            caps[i0 + r4] = s4[r4].cap;
                            if (s4[r4].failed) { free(T); return -1; }
                            if (J->mode == 0) tighten(&st[i0 + r4], kk);
                        }
                        a = b;
                    }
                }
            }
        }
        free(T);
        return 0;
    }
#endif
    for (int64_t r = 0; r < nr; r++) {
        for (int64_t g0 = rg[r].g0; g0 < rg[r].g1; g0 += bg) {
            const int64_t g1 = g0 + bg < rg[r].g1 ? g0 + bg : rg[r].g1;
            const int doubling = J->mode == 0 && first;
            first = 0;
            int64_t i0 = 0;
#if DH_X86
            if (J->mode == 2 && J->isa == ISA_AVX2 && J->ceil_qr == 4) {
                for (int64_t i = 0; i < nqb; i++) ceiling_hs_avx2(J->layout, W, g0, g1, J->n, J->queries + (qb + i) * W, &J->sums[qb + i]);
                i0 = nqb;
            }
            if (J->mode == 2 && J->isa == ISA_AVX512 && J->ceil_qr == 4)
                for (; i0 + 4 <= nqb; i0 += 4)
                    ceiling4_avx512(J->layout, W, g0, g1, J->n, J->queries + (qb + i0) * W, &J->sums[qb + i0]);
            /* k-NN and radius: four queries per database load */
            if (J->mode != 2 && (J->isa == ISA_AVX512 || J->isa == ISA_AVX2) && J->qr == 4) {
                for (; i0 + 4 <= nqb; i0 += 4) {
                    int64_t a = g0;
                    while (a < g1) {
                        int64_t b = g1;
                        if (doubling) {
                            int64_t step = a - g0 < 4 ? 4 : a - g0;
                            if (a + step < b) b = a + step;
                        }
                        sink_t s4[4];
                        sink_t *sp[4];
                        for (int r4 = 0; r4 < 4; r4++) {
                            qstate *sti = &st[i0 + r4];
                            if (J->mode == 0 && sti->len + brows > caps[i0 + r4]) compact(sti, kk);
                            s4[r4].st = sti;
                            s4[r4].cap = caps[i0 + r4];
                            s4[r4].grow = J->mode == 1;
                            s4[r4].failed = 0;
                            sp[r4] = &s4[r4];
                        }
                        if (J->isa == ISA_AVX512) scan4_avx512(J->layout, W, a, b, J->n, J->queries + (qb + i0) * W, sp);
                        else scan4_avx2(J->layout, W, a, b, J->n, J->queries + (qb + i0) * W, sp);
                        for (int r4 = 0; r4 < 4; r4++) {
                            caps[i0 + r4] = s4[r4].cap;
                            if (s4[r4].failed) return -1;
                            if (J->mode == 0) tighten(&st[i0 + r4], kk);
                        }
                        a = b;
                    }
                }
            }
#endif
            for (int64_t i = i0; i < nqb; i++) {
                int64_t a = g0;
                while (a < g1) {
                    int64_t b = g1;
                    if (doubling) {
                        int64_t step = a - g0 < 4 ? 4 : a - g0;
                        if (a + step < b) b = a + step;
                    }
                    sink_t s1 = {&st[i], caps[i], J->mode == 1, 0};
                    if (J->mode == 0 && st[i].len + brows > caps[i]) compact(&st[i], kk);
                    scan(J->layout, W, a, b, J->n, J->queries + (qb + i) * W, J->mode, &s1,
                         J->mode == 2 ? &J->sums[qb + i] : NULL);
                    caps[i] = s1.cap;
                    if (s1.failed) return -1;
                    if (J->mode == 0) tighten(&st[i], kk);
                    a = b;
                }
            }
        }
    }
    return 0;
}

static void reset_state(qstate *st, int nh, uint32_t bound) {
    memset(st->hist, 0, (size_t)nh * sizeof(int32_t));
    st->len = 0;
    st->added = 0;
    st->bound = bound;
}

#define DH_SAMPLE_STRIPS 64

static void *worker(void *arg) {
    job_t *J = (job_t *)arg;
    const int64_t Q = J->qbatch;
    const int64_t brows = J->block_groups * 8;
    const int nh = J->n_bits + 2;
    const uint32_t open_bound = J->mode == 1 ? J->radius + 1 : (uint32_t)J->n_bits + 1;
    const range_t full = {0, J->ngroups};
    qstate *st = (qstate *)calloc((size_t)Q, sizeof(qstate));
    int64_t *caps = (int64_t *)calloc((size_t)Q, sizeof(int64_t));
    int64_t *off = (int64_t *)malloc((size_t)nh * sizeof(int64_t));
    uint32_t *prior = (uint32_t *)malloc((size_t)Q * sizeof(uint32_t));
    if (!st || !caps || !off || !prior) { J->failed = 1; goto done; }
    int64_t cap0 = J->mode == 0 ? 2 * J->kk + brows : 256; /* compaction every >= kk accepts */
    for (int64_t i = 0; i < Q; i++) {
        st[i].rows = (int64_t *)malloc((size_t)cap0 * sizeof(int64_t));
        st[i].dist = (uint16_t *)malloc((size_t)cap0 * sizeof(uint16_t));
        st[i].hist = (int32_t *)malloc((size_t)nh * sizeof(int32_t));
        caps[i] = cap0;
        if (!st[i].rows || !st[i].dist || !st[i].hist) { J->failed = 1; goto done; }
    }
    /* k-NN prior: a first pass over 1/16 of the database (64 evenly spaced strips) gives each
     * query the distance t_s of its ~2k/16-th nearest sample; the full pass then starts with
     * the bound "d <= t_s" instead of accepting everything until it has seen k rows. Speed only:
     * a query whose full pass finds fewer than k rows under the prior is scanned again without. */
    range_t sample[DH_SAMPLE_STRIPS];
    int64_t kk_s = 0;
    const int use_prior = J->mode == 0 && J->prior && J->ngroups >= 8192 && J->kk * 32 <= J->n;
    if (use_prior) {
        int64_t stride = J->ngroups / DH_SAMPLE_STRIPS;
        int64_t L = J->ngroups / (16 * DH_SAMPLE_STRIPS);
        if (L < 8) L = 8;
        for (int j = 0; j < DH_SAMPLE_STRIPS; j++) {
            sample[j].g0 = j * stride;
            sample[j].g1 = j * stride + L < J->ngroups ? j * stride + L : J->ngroups;
        }
        int64_t srows = DH_SAMPLE_STRIPS * L * 8;
        kk_s = (2 * J->kk * srows + J->n - 1) / J->n;
        if (kk_s < 1) kk_s = 1;
    }
    for (int64_t qb = J->q0; qb < J->q1; qb += Q) {
        int64_t nqb = J->q1 - qb < Q ? J->q1 - qb : Q;
        for (int64_t i = 0; i < nqb; i++) {
            reset_state(&st[i], nh, open_bound);
            prior[i] = open_bound;
            if (J->mode == 2) J->sums[qb + i] = 0;
        }
        if (use_prior) {
            if (run_pass(J, st, caps, qb, nqb, sample, DH_SAMPLE_STRIPS, kk_s)) { J->failed = 1; goto done; }
            for (int64_t i = 0; i < nqb; i++) {
                if (st[i].len >= kk_s) {
                    uint32_t t = kth_distance(&st[i], kk_s) + 1;
                    if (t < prior[i]) prior[i] = t;
                }
                reset_state(&st[i], nh, prior[i]);
            }
        }
        if (run_pass(J, st, caps, qb, nqb, &full, 1, J->kk)) { J->failed = 1; goto done; }
        if (use_prior) {
            for (int64_t i = 0; i < nqb; i++) {
                if (st[i].len < J->kk && prior[i] < open_bound) {
                    reset_state(&st[i], nh, open_bound);
                    if (run_pass(J, &st[i], &caps[i], qb + i, 1, &full, 1, J->kk)) { J->failed = 1; goto done; }
                }
            }
        }
        for (int64_t i = 0; i < nqb; i++) {
            int64_t qi = qb + i;
            if (J->mode == 0) {
                write_knn(&st[i], J->kk, J->k, J->n_bits, J->outD + qi * J->k, J->outI + qi * J->k, off);
            } else if (J->mode == 1) {
                /* hand the buffer over, sorted by (distance, row) */
                int64_t L = st[i].len;
                int64_t *rr = (int64_t *)malloc((size_t)(L ? L : 1) * sizeof(int64_t));
                uint16_t *dd = (uint16_t *)malloc((size_t)(L ? L : 1) * sizeof(uint16_t));
                if (!rr || !dd) { free(rr); free(dd); J->failed = 1; goto done; }
                int64_t pos = 0;
                for (uint32_t d = 0; d <= J->radius && d <= (uint32_t)J->n_bits; d++) {
                    off[d] = pos;
                    pos += st[i].hist[d];
                }
                for (int64_t j = 0; j < L; j++) {
                    int64_t p = off[st[i].dist[j]]++;
                    rr[p] = st[i].rows[j];
                    dd[p] = st[i].dist[j];
                }
                J->r_rows[qi] = rr;
                J->r_dist[qi] = dd;
                J->r_len[qi] = L;
            }
        }
    }
done:
    if (st) {
        for (int64_t i = 0; i < Q; i++) {
            free(st[i].rows);
            free(st[i].dist);
            free(st[i].hist);
        }
    }
    free(st);
    free(caps);
    free(off);
    free(prior);
    return NULL;
}

/* split queries over threads and run; returns 0, or -1 on allocation failure */
static int run_jobs(job_t *tmpl, int64_t nq, int n_threads) {
    if (nq == 0) return 0;
    if (n_threads < 1) n_threads = 1;
    if (n_threads > nq) n_threads = (int)nq;
    job_t *jobs = (job_t *)calloc((size_t)n_threads, sizeof(job_t));
    pthread_t *th = (pthread_t *)calloc((size_t)n_threads, sizeof(pthread_t));
    int *started = (int *)calloc((size_t)n_threads, sizeof(int));
    int rc = 0;
    if (!jobs || !th || !started) { free(jobs); free(th); free(started); return -1; }
    for (int t = 0; t < n_threads; t++) {
        jobs[t] = *tmpl;
        jobs[t].q0 = nq * t / n_threads;
        jobs[t].q1 = nq * (t + 1) / n_threads;
        jobs[t].failed = 0;
    }
    for (int t = 1; t < n_threads; t++)
        started[t] = pthread_create(&th[t], NULL, worker, &jobs[t]) == 0;
    worker(&jobs[0]);
    for (int t = 1; t < n_threads; t++) {
        if (started[t]) pthread_join(th[t], NULL);
        else worker(&jobs[t]); /* could not start a thread: do its share here */
    }
    for (int t = 0; t < n_threads; t++)
        if (jobs[t].failed) rc = -1;
    free(jobs);
    free(th);
    free(started);
    return rc;
}

/* ----------------------------------------------------------------------------------------- */
/* Python bindings                                                                           */

static int g_forced_isa = -1;

static int current_isa(void) { return g_forced_isa >= 0 ? g_forced_isa : best_isa(); }

/* the instruction set called `name` (NULL: the current one); -1 with a Python error when unknown or unsupported */
static int isa_by_name(const char *name) {
    if (!name) return current_isa();
    for (int i = 0; i < ISA_COUNT; i++) {
        if (strcmp(name, ISA_NAMES[i]) == 0) {
            if (!isa_supported(i)) {
                PyErr_Format(PyExc_ValueError, "instruction set %s is not supported by this CPU", name);
                return -1;
            }
            return i;
        }
    }
    PyErr_Format(PyExc_ValueError, "unknown instruction set %s; known: generic, popcnt, avx2, avx512", name);
    return -1;
}

/* parse (layout, n, n_bits, queries, isa) and fill the common part of a job */
static int setup_job(job_t *J, PyArrayObject *lay, Py_ssize_t n, int n_bits, PyArrayObject *qs, const char *isa_name,
                     int64_t *nq_out) {
    memset(J, 0, sizeof(*J));
    int isa = isa_by_name(isa_name);
    if (isa < 0) return -1;
    if (n_bits <= 0 || n_bits % 8 || n_bits > 1024) {
        PyErr_Format(PyExc_ValueError, "n_bits must be a multiple of 8 between 8 and 1024; got %d", n_bits);
        return -1;
    }
    if (n < 0) {
        PyErr_Format(PyExc_ValueError, "n must be >= 0; got %zd", n);
        return -1;
    }
    int W = (n_bits + 63) / 64;
    int64_t ngroups = (n + 7) / 8;
    J->isa = isa;
    if (PyArray_TYPE(lay) == NPY_UINT8) { /* the AVX2 byte-sliced layout */
        int64_t need = (n + 31) / 32 * 32 * (n_bits / 8);
        if (J->isa != ISA_AVX2 || n_bits > 128) {
            PyErr_Format(PyExc_ValueError, "the byte-sliced layout needs the avx2 path and n_bits <= 128; got %s and n_bits=%d",
                         ISA_NAMES[J->isa], n_bits);
            return -1;
        }
        if (PyArray_NDIM(lay) != 1 || !PyArray_IS_C_CONTIGUOUS(lay) || PyArray_DIM(lay, 0) < need) {
            PyErr_Format(PyExc_ValueError, "a byte-sliced layout must be a C-contiguous 1-D uint8 array of at least %lld bytes for n=%zd, n_bits=%d",
                         (long long)need, n, n_bits);
            return -1;
        }
        J->bsl = (const uint8_t *)PyArray_DATA(lay);
        J->nb = n_bits / 8;
    } else if (PyArray_TYPE(lay) != NPY_UINT64 || PyArray_NDIM(lay) != 1 || !PyArray_IS_C_CONTIGUOUS(lay) ||
        PyArray_DIM(lay, 0) < ngroups * W * 8) {
        PyErr_Format(PyExc_ValueError,
                     "layout must be a C-contiguous 1-Darr uint64 array of at least %lld words for n=%zd, n_bits=%d",
                     (long long)(ngroups * W * 8), n, n_bits);
        return -1;
    }
    if (PyArray_TYPE(qs) != NPY_UINT64 || PyArray_NDIM(qs) != 2 || !PyArray_IS_C_CONTIGUOUS(qs) ||
        PyArray_DIM(qs, 1) != W) {
        PyErr_Format(PyExc_ValueError, "queries must be a C-contiguous uint64 array of shape (nq, %d)", W);
        return -1;
    }
    J->layout = J->bsl ? NULL : (const uint64_t *)PyArray_DATA(lay);
    J->n = n;
    J->ngroups = ngroups;
    J->W = W;
    J->n_bits = n_bits;
    J->queries = (const uint64_t *)PyArray_DATA(qs);
    /* a block of ~64 KiB of codes stays in L2 while a query batch runs over it */
    int64_t bg = (65536 / 64) / W;
    J->block_groups = bg < 1 ? 1 : bg;
    *nq_out = PyArray_DIM(qs, 0);
    return 0;
}

static PyObject *py_knn(PyObject *self, PyObject *args, PyObject *kw) {
    static char *kwlist[] = {"layout", "n", "n_bits", "queries", "k", "n_threads", "qbatch", "qregister", "prior", "isa", NULL};
    PyArrayObject *lay, *qs;
    Py_ssize_t n, k, qbatch = 0;
    int n_bits, n_threads = 1, qreg = 4, prior = 1;
    const char *isa = NULL;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "O!niO!n|inipz", kwlist, &PyArray_Type, &lay, &n, &n_bits,
                                     &PyArray_Type, &qs, &k, &n_threads, &qbatch, &qreg, &prior, &isa))
        return NULL;
    job_t J;
    int64_t nq;
    if (setup_job(&J, lay, n, n_bits, qs, isa, &nq)) return NULL;
    if (k < 1) {
        PyErr_Format(PyExc_ValueError, "k must be a positive integer; got %zd", k);
        return NULL;
    }
    J.mode = 0;
    J.qr = qreg == 4 ? 4 : 1;
    J.prior = prior;
    J.k = k;
    J.kk = k < n ? k : n;
    /* query batch: 32, fewer when k is large so the per-query buffers stay within ~64 MiB */
    int64_t per_q = (2 * J.kk + J.block_groups * 8) * 10 + (n_bits + 2) * 4;
    int64_t Q = qbatch > 0 ? qbatch : 32;
    while (Q > 1 && Q * per_q > (64LL << 20)) Q /= 2;
    J.qbatch = Q;
    npy_intp dims[2] = {(npy_intp)nq, (npy_intp)k};
    PyArrayObject *Darr = (PyArrayObject *)PyArray_SimpleNew(2, dims, NPY_INT32);
    PyArrayObject *Iarr = (PyArrayObject *)PyArray_SimpleNew(2, dims, NPY_INT64);
    if (!Darr || !Iarr) { Py_XDECREF(Darr); Py_XDECREF(Iarr); return NULL; }
    J.outD = (int32_t *)PyArray_DATA(Darr);
    J.outI = (int64_t *)PyArray_DATA(Iarr);
    int rc;
    Py_BEGIN_ALLOW_THREADS
    rc = run_jobs(&J, nq, n_threads);
    Py_END_ALLOW_THREADS
    if (rc) {
        Py_DECREF(Darr);
        Py_DECREF(Iarr);
        return PyErr_NoMemory();
    }
    return Py_BuildValue("(NN)", Darr, Iarr);
}

static PyObject *py_radius(PyObject *self, PyObject *args, PyObject *kw) {
    static char *kwlist[] = {"layout", "n", "n_bits", "queries", "radius", "n_threads", "isa", NULL};
    PyArrayObject *lay, *qs;
    Py_ssize_t n;
    int n_bits, radius, n_threads = 1;
    const char *isa = NULL;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "O!niO!i|iz", kwlist, &PyArray_Type, &lay, &n, &n_bits, &PyArray_Type,
                                     &qs, &radius, &n_threads, &isa))
        return NULL;
    job_t J;
    int64_t nq;
    if (setup_job(&J, lay, n, n_bits, qs, isa, &nq)) return NULL;
    if (radius < 0) {
        PyErr_Format(PyExc_ValueError, "radius must be >= 0; got %d", radius);
        return NULL;
    }
    J.mode = 1;
    J.qr = 4;
    J.radius = (uint32_t)(radius > n_bits ? n_bits : radius);
    J.qbatch = 16;
    int64_t nq1 = nq ? nq : 1;
    J.r_rows = (int64_t **)calloc((size_t)nq1, sizeof(int64_t *));
    J.r_dist = (uint16_t **)calloc((size_t)nq1, sizeof(uint16_t *));
    J.r_len = (int64_t *)calloc((size_t)nq1, sizeof(int64_t));
    PyObject *res = NULL;
    int rc = -1;
    if (J.r_rows && J.r_dist && J.r_len) {
        Py_BEGIN_ALLOW_THREADS
        rc = run_jobs(&J, nq, n_threads);
        Py_END_ALLOW_THREADS
    }
    if (rc == 0) {
        npy_intp nl = (npy_intp)nq + 1, tot = 0;
        for (int64_t i = 0; i < nq; i++) tot += J.r_len[i];
        PyArrayObject *lims = (PyArrayObject *)PyArray_SimpleNew(1, &nl, NPY_INT64);
        PyArrayObject *Darr = (PyArrayObject *)PyArray_SimpleNew(1, &tot, NPY_INT32);
        PyArrayObject *Iarr = (PyArrayObject *)PyArray_SimpleNew(1, &tot, NPY_INT64);
        if (lims && Darr && Iarr) {
            int64_t *L = (int64_t *)PyArray_DATA(lims);
            int32_t *pd = (int32_t *)PyArray_DATA(Darr);
            int64_t *pi = (int64_t *)PyArray_DATA(Iarr);
            int64_t pos = 0;
            L[0] = 0;
            for (int64_t i = 0; i < nq; i++) {
                for (int64_t j = 0; j < J.r_len[i]; j++) {
                    pd[pos + j] = J.r_dist[i][j];
                    pi[pos + j] = J.r_rows[i][j];
                }
                pos += J.r_len[i];
                L[i + 1] = pos;
            }
            res = Py_BuildValue("(NNN)", lims, Darr, Iarr);
        } else {
            Py_XDECREF(lims);
            Py_XDECREF(Darr);
            Py_XDECREF(Iarr);
        }
    } else {
        PyErr_NoMemory();
    }
    if (J.r_rows)
        for (int64_t i = 0; i < nq; i++) free(J.r_rows[i]);
    if (J.r_dist)
        for (int64_t i = 0; i < nq; i++) free(J.r_dist[i]);
    free(J.r_rows);
    free(J.r_dist);
    free(J.r_len);
    return res;
}

static PyObject *py_ceiling(PyObject *self, PyObject *args, PyObject *kw) {
    static char *kwlist[] = {"layout", "n", "n_bits", "queries", "n_threads", "qbatch", "qregister", "isa", NULL};
    PyArrayObject *lay, *qs;
    Py_ssize_t n, qbatch = 32;
    int n_bits, n_threads = 1, qreg = 4;
    const char *isa = NULL;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "O!niO!|iniz", kwlist, &PyArray_Type, &lay, &n, &n_bits, &PyArray_Type,
                                     &qs, &n_threads, &qbatch, &qreg, &isa))
        return NULL;
    job_t J;
    int64_t nq;
    if (setup_job(&J, lay, n, n_bits, qs, isa, &nq)) return NULL;
    J.mode = 2;
    J.qbatch = qbatch < 1 ? 1 : qbatch;
    J.ceil_qr = qreg == 4 ? 4 : 1;
    npy_intp dims[1] = {(npy_intp)nq};
    PyArrayObject *S = (PyArrayObject *)PyArray_SimpleNew(1, dims, NPY_INT64);
    if (!S) return NULL;
    J.sums = (int64_t *)PyArray_DATA(S);
    int rc;
    Py_BEGIN_ALLOW_THREADS
    rc = run_jobs(&J, nq, n_threads);
    Py_END_ALLOW_THREADS
    if (rc) {
        Py_DECREF(S);
        return PyErr_NoMemory();
    }
    return (PyObject *)S;
}

static PyObject *py_isa(PyObject *self, PyObject *noargs) { return PyUnicode_FromString(ISA_NAMES[current_isa()]); }

static PyObject *py_supported_isas(PyObject *self, PyObject *noargs) {
    PyObject *l = PyList_New(0);
    if (!l) return NULL;
    for (int i = 0; i < ISA_COUNT; i++) {
        if (isa_supported(i)) {
            PyObject *s = PyUnicode_FromString(ISA_NAMES[i]);
            if (!s || PyList_Append(l, s)) { Py_XDECREF(s); Py_DECREF(l); return NULL; }
            Py_DECREF(s);
        }
    }
    return l;
}

static PyObject *py_set_isa(PyObject *self, PyObject *arg) {
    if (arg == Py_None) {
        g_forced_isa = -1;
        Py_RETURN_NONE;
    }
    const char *name = PyUnicode_AsUTF8(arg);
    if (!name) return NULL;
    int isa = isa_by_name(name);
    if (isa < 0) return NULL;
    g_forced_isa = isa;
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"knn", (PyCFunction)(void (*)(void))py_knn, METH_VARARGS | METH_KEYWORDS,
     "knn(layout, n, n_bits, queries, k, n_threads=1, qbatch=0, qregister=4, prior=True, isa=None) -> (D int32 (nq,k), I int64 (nq,k)):\n"
     "exact Hamming k-NN, ties by row, padded with (n_bits+1, -1). isa names the instruction set (None: isa())."},
    {"radius", (PyCFunction)(void (*)(void))py_radius, METH_VARARGS | METH_KEYWORDS,
     "radius(layout, n, n_bits, queries, radius, n_threads=1, isa=None) -> (lims int64 (nq+1), D int32, I int64):\n"
     "all rows with distance <= radius, each query's hits sorted by (distance, row)."},
    {"ceiling", (PyCFunction)(void (*)(void))py_ceiling, METH_VARARGS | METH_KEYWORDS,
     "ceiling(layout, n, n_bits, queries, n_threads=1, qbatch=32, qregister=4, isa=None) -> int64 (nq,): sum of the distances to every\n"
     "row (XOR + popcount with no top-k; the benchmark's hardware ceiling)."},
    {"isa", py_isa, METH_NOARGS, "name of the instruction set the kernels use"},
    {"supported_isas", py_supported_isas, METH_NOARGS, "instruction sets this CPU supports"},
    {"set_isa", py_set_isa, METH_O, "force an instruction set by name (None: the best supported); for tests"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef moddef = {PyModuleDef_HEAD_INIT, "_hamming",
                                    "Exact Hamming search kernels over interleaved 64-bit code words.", -1, methods};

PyMODINIT_FUNC PyInit__hamming(void) {
    import_array();
    return PyModule_Create(&moddef);
}
