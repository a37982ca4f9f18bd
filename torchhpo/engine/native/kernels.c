/* Fused CPU passes of a pack's training step (see torchhpo/engine/native/__init__.py).
 *
 * Every exported function's parameters, the OP_* codes and the program's calls
 * come from the declaration in torchhpo/engine/native/interface.py, through the
 * header it generates at build time (torchhpo_interface.h; interface.header()
 * returns its text): <NAME>_PARAMS(T) below stands for the parameters declared
 * there, under the names this file uses, and CALL_<NAME> for a program's call.
 *
 * Each function does in one pass over memory what the ATen path does in several
 * (one dispatch each): the batch gather of inputs and targets, the softmax
 * output's bias, shift, normalisation, log-loss, delta and intercept gradient,
 * and the L2 term plus a whole Adam or SGD update of a parameter block. Models
 * are independent: model i's numbers never depend on another model's, so a
 * model's result is the same in any pack.
 *
 * The arithmetic is scikit-learn's, operation for operation, and the file is
 * compiled with -ffp-contract=off, so no multiply-add is fused behind its back.
 * Every function exists for float (suffix _f32) and double (_f64).
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "torchhpo_interface.h"

#define LANES 16

/* Rows idx of X (n, f) into x (r, f); columns idx of Y (k, n) into y (k, r). */
#define GATHER(T, SFX)                                                          \
  void gather_##SFX(GATHER_PARAMS(T)) {                                        \
    for (int64_t i = 0; i < r; ++i)                                            \
      memcpy(x + i * f, X + idx[i] * f, (size_t)f * sizeof(T));               \
    for (int64_t c = 0; c < k; ++c) {                                          \
      const T *src = Y + c * n;                                                \
      T *dst = y + c * r;                                                      \
      for (int64_t i = 0; i < r; ++i) dst[i] = src[idx[i]];                    \
    }                                                                          \
  }

/* Softmax, first half, on z (M, K, B): add the intercepts (bias[i * bias_stride
 * + k], none if bias is NULL), then subtract each column's maximum over K. The
 * exponential runs between the halves, as one vectorised ATen call. */
#define SOFTMAX_SHIFT(T, SFX)                                                   \
  void softmax_shift_##SFX(SOFTMAX_SHIFT_PARAMS(T)) {                          \
    for (int64_t i = 0; i < M; ++i) {                                          \
      T *zi = z + i * K * B;                                                   \
      if (bias) {                                                              \
        const T *bi = bias + i * bias_stride;                                  \
        for (int64_t c = 0; c < K; ++c) {                                      \
          T *row = zi + c * B;                                                 \
          const T bc = bi[c];                                                  \
          for (int64_t b = 0; b < B; ++b) row[b] += bc;                        \
        }                                                                      \
      }                                                                        \
      memcpy(mx, zi, (size_t)B * sizeof(T));                                   \
      for (int64_t c = 1; c < K; ++c) {                                        \
        const T *row = zi + c * B;                                             \
        for (int64_t b = 0; b < B; ++b) mx[b] = row[b] > mx[b] ? row[b] : mx[b]; \
      }                                                                        \
      for (int64_t c = 0; c < K; ++c) {                                        \
        T *row = zi + c * B;                                                   \
        for (int64_t b = 0; b < B; ++b) row[b] -= mx[b];                       \
      }                                                                        \
    }                                                                          \
  }

/* Softmax, middle: sums[i * B + b] = sum_k e (e = exp(shifted z), (M, K, B)).
 * The logarithm of the sums runs next, as one vectorised ATen call. */
#define SOFTMAX_SUMS(T, SFX)                                                    \
  void softmax_sums_##SFX(SOFTMAX_SUMS_PARAMS(T)) {                            \
    for (int64_t i = 0; i < M; ++i) {                                          \
      const T *ei = e + i * K * B;                                             \
      T *si = sums + i * B;                                                    \
      memcpy(si, ei, (size_t)B * sizeof(T));                                   \
      for (int64_t c = 1; c < K; ++c) {                                        \
        const T *row = ei + c * B;                                             \
        for (int64_t b = 0; b < B; ++b) si[b] += row[b];                       \
      }                                                                        \
    }                                                                          \
  }

/* Softmax, last: with z the shifted outputs, e = exp(z) and s, ls the sums of
 * e over K and their logarithms, (M, B):
 *   p = e / s (written over e);
 *   loss[i] = sum_{k,b} y log(clip(p, eps, 1 - eps)) w[b], where the logarithm
 *             of an unclipped p is z - ls (the same number, no log call), summed
 *             over all k without a branch on y (a term with y = 0 is 0);
 *   delta = (p - y) * w_scaled[b], zero where pad[b], written over z;
 *   bgrad[i * bgrad_stride + k] = sum_b delta (skipped if bgrad is NULL).
 * y[i * y_model + k * y_class + b]; w, w_scaled, pad: (M, B); pad may be NULL. */
#define LOG_CLIPPED(j)                                                          \
  (er[j] < eps ? log_lo : (er[j] > hi ? log_hi : zr[j] - lsi[j]))
#define SOFTMAX_DELTA(T, SFX, LOG)                                              \
  void softmax_delta_##SFX(SOFTMAX_DELTA_PARAMS(T)) {                          \
    const T hi = 1 - eps, log_lo = LOG(eps), log_hi = LOG(hi);                 \
    for (int64_t i = 0; i < M; ++i) {                                          \
      T *zi = z + i * K * B, *ei = e + i * K * B;                              \
      const T *si = s + i * B, *lsi = ls + i * B;                              \
      const T *wi = w + i * B, *wsi = w_scaled + i * B;                        \
      const uint8_t *padi = pad ? pad + i * B : NULL;                          \
      double acc = 0;                                                          \
      for (int64_t c = 0; c < K; ++c) {                                        \
        T *zr = zi + c * B, *er = ei + c * B;                                  \
        const T *yc = y + i * y_model + c * y_class;                           \
        for (int64_t b = 0; b < B; ++b) er[b] = er[b] / si[b];                 \
        T part[LANES] = {0};                                                   \
        int64_t b = 0;                                                         \
        for (; b + LANES <= B; b += LANES)                                     \
          for (int l = 0; l < LANES; ++l)                                      \
            part[l] += yc[b + l] * LOG_CLIPPED(b + l) * wi[b + l];             \
        for (; b < B; ++b) acc += (double)(yc[b] * LOG_CLIPPED(b) * wi[b]);    \
        for (int l = 0; l < LANES; ++l) acc += (double)part[l];                \
        for (int64_t b = 0; b < B; ++b) zr[b] = er[b] - yc[b];                 \
        if (padi)                                                              \
          for (int64_t b = 0; b < B; ++b) zr[b] = padi[b] ? 0 : zr[b];         \
        for (int64_t b = 0; b < B; ++b) zr[b] *= wsi[b];                       \
        if (bgrad) bgrad[i * bgrad_stride + c] = (T)sum_##SFX(zr, B);          \
      }                                                                        \
      loss[i] = (T)acc;                                                        \
    }                                                                          \
  }

/* Sums of w[0:n] and of its squares, in LANES partial sums (a vectorisable
 * order) added up in double. */
#define SUMS(T, SFX)                                                            \
  static double sum_##SFX(const T *w, int64_t n) {                            \
    T part[LANES] = {0};                                                       \
    int64_t j = 0;                                                             \
    for (; j + LANES <= n; j += LANES)                                         \
      for (int l = 0; l < LANES; ++l) part[l] += w[j + l];                     \
    double total = 0;                                                          \
    for (; j < n; ++j) total += (double)w[j];                                  \
    for (int l = 0; l < LANES; ++l) total += (double)part[l];                  \
    return total;                                                              \
  }                                                                            \
  static double squares_##SFX(const T *w, int64_t n) {                        \
    T part[LANES] = {0};                                                       \
    int64_t j = 0;                                                             \
    for (; j + LANES <= n; j += LANES)                                         \
      for (int l = 0; l < LANES; ++l) part[l] += w[j + l] * w[j + l];          \
    double total = 0;                                                          \
    for (; j < n; ++j) total += (double)(w[j] * w[j]);                         \
    for (int l = 0; l < LANES; ++l) total += (double)part[l];                  \
    return total;                                                              \
  }

/* One optimizer update of models [0, M) of a parameter block p (M, rows + 1,
 * cols) whose last row holds the intercepts. Gradients: coefficients at
 * gc[i * gc_stride + j] (j < rows * cols), intercepts at gb[i * gb_stride + c];
 * the L2 term alpha[i] * p is added to the coefficients' here. Before the
 * update, squares[i] gets (or, if accumulate, adds) the sum of the squared
 * coefficients: the penalty of the loss of the weights the step ran with.
 *
 * Adam:  m = b1 m + (1 - b1) g;  v = b2 v + (1 - b2) g g;
 *        p += -lr m / (sqrt(v) + eps), lr = lr_t[i]; step[i] += 1.
 * SGD:   vel = mu vel - lr g;  p += vel, or (Nesterov) p += mu vel - lr g. */
#define ADAM(T, SFX, SQRT)                                                      \
  static inline void adam_range_##SFX(T *p, T *m, T *v, const T *g,            \
                                      int64_t n, T a, int with_l2, T b1,       \
                                      T omb1, T b2, T omb2, T eps, T lr) {     \
    for (int64_t j = 0; j < n; ++j) {                                          \
      const T gj = with_l2 ? g[j] + a * p[j] : g[j];                           \
      const T mj = b1 * m[j] + omb1 * gj;                                      \
      const T vj = b2 * v[j] + omb2 * (gj * gj);                               \
      m[j] = mj;                                                               \
      v[j] = vj;                                                               \
      p[j] += (-lr * mj) / (SQRT(vj) + eps);                                   \
    }                                                                          \
  }                                                                            \
  void adam_##SFX(ADAM_PARAMS(T)) {                                            \
    const int64_t block = (rows + 1) * cols, ncoef = rows * cols;             \
    for (int64_t i = 0; i < M; ++i) {                                          \
      T *pi = p + i * block, *mi = m + i * block, *vi = v + i * block;         \
      const double sq = squares_##SFX(pi, ncoef);                              \
      squares[i] = accumulate ? squares[i] + sq : sq;                          \
      adam_range_##SFX(pi, mi, vi, gc + i * gc_stride, ncoef, alpha[i], 1,     \
                       b1[i], omb1[i], b2[i], omb2[i], eps[i], lr[i]);         \
      adam_range_##SFX(pi + ncoef, mi + ncoef, vi + ncoef, gb + i * gb_stride, \
                       cols, 0, 0, b1[i], omb1[i], b2[i], omb2[i], eps[i],     \
                       lr[i]);                                                 \
      if (step) step[i] += 1;                                                  \
    }                                                                          \
  }

#define SGD(T, SFX)                                                             \
  static inline void sgd_range_##SFX(T *p, T *vel, const T *g, int64_t n, T a, \
                                     int with_l2, T lr, T mu, int nesterov) {  \
    if (nesterov) {                                                            \
      for (int64_t j = 0; j < n; ++j) {                                        \
        const T gj = with_l2 ? g[j] + a * p[j] : g[j];                         \
        const T u = mu * vel[j] - lr * gj;                                     \
        vel[j] = u;                                                            \
        p[j] += mu * u - lr * gj;                                              \
      }                                                                        \
    } else {                                                                   \
      for (int64_t j = 0; j < n; ++j) {                                        \
        const T gj = with_l2 ? g[j] + a * p[j] : g[j];                         \
        const T u = mu * vel[j] - lr * gj;                                     \
        vel[j] = u;                                                            \
        p[j] += u;                                                             \
      }                                                                        \
    }                                                                          \
  }                                                                            \
  void sgd_##SFX(SGD_PARAMS(T)) {                                              \
    const int64_t block = (rows + 1) * cols, ncoef = rows * cols;             \
    for (int64_t i = 0; i < M; ++i) {                                          \
      T *pi = p + i * block, *veli = vel + i * block;                          \
      const double sq = squares_##SFX(pi, ncoef);                              \
      squares[i] = accumulate ? squares[i] + sq : sq;                          \
      sgd_range_##SFX(pi, veli, gc + i * gc_stride, ncoef, alpha[i], 1, lr[i], \
                      mu[i], nesterov);                                        \
      sgd_range_##SFX(pi + ncoef, veli + ncoef, gb + i * gb_stride, cols, 0,   \
                      0, lr[i], mu[i], nesterov);                              \
    }                                                                          \
  }

/* Hidden layer, forward epilogue, on z (M, B, H) after its matmul: per model i,
 * add the intercepts bias[i * bias_stride + h] (none if bias is NULL), then
 * where act[i] is 1 apply relu, max(z, 0) with NaN kept (np.maximum's). Other
 * codes (0) leave the activation to the caller (identity, or ATen's vectorised
 * tanh / logistic). */
#define HIDDEN_FORWARD(T, SFX)                                                  \
  void hidden_forward_##SFX(HIDDEN_FORWARD_PARAMS(T)) {                        \
    for (int64_t i = 0; i < M; ++i) {                                          \
      T *zi = z + i * B * H;                                                   \
      const T *bi = bias ? bias + i * bias_stride : NULL;                      \
      if (act[i] == 1 && bi) {                                                 \
        for (int64_t b = 0; b < B; ++b) {                                      \
          T *row = zi + b * H;                                                 \
          for (int64_t h = 0; h < H; ++h) {                                    \
            const T v = row[h] + bi[h];                                        \
            row[h] = v < 0 ? 0 : v;                                            \
          }                                                                    \
        }                                                                      \
      } else if (act[i] == 1) {                                                \
        for (int64_t j = 0; j < B * H; ++j) zi[j] = zi[j] < 0 ? 0 : zi[j];     \
      } else if (bi) {                                                         \
        for (int64_t b = 0; b < B; ++b) {                                      \
          T *row = zi + b * H;                                                 \
          for (int64_t h = 0; h < H; ++h) row[h] += bi[h];                     \
        }                                                                      \
      }                                                                        \
    }                                                                          \
  }

/* Hidden layer, backward epilogue, on delta (M, B, H) (the matmul's delta @ W.T)
 * with a (M, B, H) the layer's activations: per model i, the derivative of
 * act[i], scikit-learn's: 0 identity (none), 1 relu (delta = 0 where a == 0),
 * 2 tanh (delta *= 1 - a * a), 3 logistic (delta *= a; delta *= 1 - a). Then,
 * if bgrad, bgrad[i * bgrad_stride + h] = sum over b of delta, added in double
 * (acc: H doubles of scratch). */
#define HIDDEN_BACKWARD(T, SFX)                                                 \
  void hidden_backward_##SFX(HIDDEN_BACKWARD_PARAMS(T)) {                      \
    const int64_t n = B * H;                                                   \
    for (int64_t i = 0; i < M; ++i) {                                          \
      T *d = delta + i * n;                                                    \
      const T *ai = a + i * n;                                                 \
      switch (act[i]) {                                                        \
        case 1:                                                                \
          for (int64_t j = 0; j < n; ++j) d[j] = ai[j] == 0 ? 0 : d[j];        \
          break;                                                               \
        case 2:                                                                \
          for (int64_t j = 0; j < n; ++j) d[j] *= 1 - ai[j] * ai[j];           \
          break;                                                               \
        case 3:                                                                \
          for (int64_t j = 0; j < n; ++j) {                                    \
            d[j] *= ai[j];                                                     \
            d[j] *= 1 - ai[j];                                                 \
          }                                                                    \
          break;                                                               \
        default:                                                               \
          break;                                                               \
      }                                                                        \
      if (!bgrad) continue;                                                    \
      for (int64_t h = 0; h < H; ++h) acc[h] = 0;                              \
      for (int64_t b = 0; b < B; ++b) {                                        \
        const T *row = d + b * H;                                              \
        for (int64_t h = 0; h < H; ++h) acc[h] += (double)row[h];              \
      }                                                                        \
      T *g = bgrad + i * bgrad_stride;                                         \
      for (int64_t h = 0; h < H; ++h) g[h] = (T)acc[h];                        \
    }                                                                          \
  }

/* The output pass of the other losses, on z (M, K, B) after its matmul: add the
 * intercepts (as softmax_shift), apply the output activation of kind (0 squared
 * error: identity; 1 log-loss: logistic; 2 poisson: exp), then per model i:
 *   loss[i] = scikit-learn's loss over the batch, each row weighted by w[b] (a
 *             zero-weight row counts for nothing, even where its output
 *             overflowed), over denom[i]:
 *     0: 1/2 * mean over k of (sum_b (y - p)^2 w) / denom;
 *     1: -(sum_{k,b} (xlogy(y, q) + xlogy(1 - y, 1 - q)) w) / denom, with
 *        q = clip(p, eps, 1 - eps);
 *     2: (sum_{k,b} (xlogy(y, y / p) - y + p) w) / denom;
 *   delta = (p - y) * w_scaled[b], zero where pad[b] (pad may be NULL), over z;
 *   bgrad[i * bgrad_stride + k] = sum_b delta (skipped if bgrad is NULL).
 * y[i * y_model + k * y_class + b]; w, w_scaled, pad: (M, B). */
#define OUTPUT_PASS(T, SFX, EXP, LOG)                                           \
  void output_pass_##SFX(OUTPUT_PASS_PARAMS(T)) {                              \
    for (int64_t i = 0; i < M; ++i) {                                          \
      T *zi = z + i * K * B;                                                   \
      const T *wi = w + i * B, *wsi = w_scaled + i * B;                        \
      const uint8_t *padi = pad ? pad + i * B : NULL;                          \
      double total = 0;                                                        \
      for (int64_t c = 0; c < K; ++c) {                                        \
        T *row = zi + c * B;                                                   \
        const T *yc = y + i * y_model + c * y_class;                           \
        const T bc = bias ? bias[i * bias_stride + c] : 0;                     \
        double part = 0;                                                       \
        for (int64_t b = 0; b < B; ++b) {                                      \
          T p = bias ? row[b] + bc : row[b];                                   \
          if (kind == 1)                                                       \
            p = 1 / (1 + EXP(-p));                                             \
          else if (kind == 2)                                                  \
            p = EXP(p);                                                        \
          const T t = yc[b];                                                   \
          if (wi[b] != 0) {                                                    \
            T term;                                                            \
            if (kind == 0) {                                                   \
              const T d = t - p;                                               \
              term = d * d;                                                    \
            } else if (kind == 1) {                                            \
              const T q = p < eps ? eps : (p > 1 - eps ? 1 - eps : p);         \
              term = (t != 0 ? t * LOG(q) : 0) +                               \
                     (1 - t != 0 ? (1 - t) * LOG(1 - q) : 0);                  \
            } else {                                                           \
              term = (t != 0 ? t * LOG(t / p) : 0) - t + p;                    \
            }                                                                  \
            part += (double)(term * wi[b]);                                    \
          }                                                                    \
          const T d = p - t;                                                   \
          row[b] = (padi && padi[b] ? 0 : d) * wsi[b];                         \
        }                                                                      \
        total += kind == 0 ? part / (double)denom[i] : part;                   \
        if (bgrad) bgrad[i * bgrad_stride + c] = (T)sum_##SFX(row, B);         \
      }                                                                        \
      if (kind == 0)                                                           \
        loss[i] = (T)(0.5 * (total / (double)K));                              \
      else if (kind == 1)                                                      \
        loss[i] = (T)(-total / (double)denom[i]);                              \
      else                                                                     \
        loss[i] = (T)(total / (double)denom[i]);                               \
    }                                                                          \
  }

/* rng.py's key mixer: a bijection on 32-bit integers. */
static inline uint32_t mix32(uint32_t x) {
  x ^= x >> 16;
  x *= 0x45D9F3Bu;
  x ^= x >> 15;
  x *= 0x119DE1F3u;
  return x ^ (x >> 16);
}

/* Sorts src[0:len) (distinct values) into dst: a counting pass into 2**bits
 * buckets by the top bits (about one value each: the keys are uniform hashes),
 * then an insertion sort, which only moves values that share a bucket. */
static void sort_distinct(const uint64_t *src, uint64_t *dst, int64_t len,
                          int bits, int64_t *count) {
  const int64_t buckets = (int64_t)1 << bits;
  const int shift = 64 - bits;
  for (int64_t d = 0; d <= buckets; ++d) count[d] = 0;
  for (int64_t j = 0; j < len; ++j) ++count[(src[j] >> shift) + 1];
  for (int64_t d = 0; d < buckets; ++d) count[d + 1] += count[d];
  for (int64_t j = 0; j < len; ++j) dst[count[src[j] >> shift]++] = src[j];
  for (int64_t j = 1; j < len; ++j) {
    const uint64_t v = dst[j];
    int64_t k = j;
    for (; k > 0 && dst[k - 1] > v; --k) dst[k] = dst[k - 1];
    dst[k] = v;
  }
}

#define MAX_BUCKET_BITS 16

/* One epoch's batch rows of M models, in the step layout idx (S, M, B): model i
 * orders its first n[i] positions by the keys mix32(base[i] ^ j) if shuffle[i]
 * (rng.permutation_order's keys, distinct, so every sort gives this order), else
 * keeps them, and the padding positions n[i]..width-1 follow in order; then
 * idx[s, i, b] = rows[i, order[positions[i, s * B + b]]], with rows (M, width)
 * and positions (M, S * B). Returns 0, or -1 if the scratch could not be
 * allocated. */
int epoch_rows(EPOCH_ROWS_PARAMS) {
  uint64_t *pairs = malloc(2 * (size_t)width * sizeof(uint64_t));
  int64_t *order = malloc((size_t)width * sizeof(int64_t));
  int64_t *count = malloc((((size_t)1 << MAX_BUCKET_BITS) + 1) * sizeof(int64_t));
  if (!pairs || !order || !count) {
    free(pairs);
    free(order);
    free(count);
    return -1;
  }
  uint64_t *sorted = pairs + width;
  for (int64_t i = 0; i < M; ++i) {
    const int64_t len = n[i] < width ? n[i] : width;
    for (int64_t j = 0; j < width; ++j) order[j] = j;
    if (shuffle[i] && len > 1) {
      const uint32_t key = (uint32_t)base[i];
      for (int64_t j = 0; j < len; ++j)
        pairs[j] = (uint64_t)mix32(key ^ (uint32_t)j) << 32 | (uint64_t)j;
      int bits = 1;
      while (((int64_t)1 << bits) < len && bits < MAX_BUCKET_BITS) ++bits;
      sort_distinct(pairs, sorted, len, bits, count);
      for (int64_t j = 0; j < len; ++j) order[j] = (int64_t)(sorted[j] & 0xFFFFFFFFu);
    }
    const int64_t *rows_i = rows + i * width, *pos_i = positions + i * S * B;
    for (int64_t s = 0; s < S; ++s) {
      int64_t *out = idx + (s * M + i) * B;
      const int64_t *pos = pos_i + s * B;
      for (int64_t b = 0; b < B; ++b) out[b] = rows_i[order[pos[b]]];
    }
  }
  free(pairs);
  free(order);
  free(count);
  return 0;
}

SUMS(float, f32)
SUMS(double, f64)
GATHER(float, f32)
GATHER(double, f64)
SOFTMAX_SHIFT(float, f32)
SOFTMAX_SHIFT(double, f64)
SOFTMAX_SUMS(float, f32)
SOFTMAX_SUMS(double, f64)
SOFTMAX_DELTA(float, f32, logf)
SOFTMAX_DELTA(double, f64, log)
ADAM(float, f32, sqrtf)
ADAM(double, f64, sqrt)
SGD(float, f32)
SGD(double, f64)
HIDDEN_FORWARD(float, f32)
HIDDEN_FORWARD(double, f64)
HIDDEN_BACKWARD(float, f32)
HIDDEN_BACKWARD(double, f64)
OUTPUT_PASS(float, f32, expf, logf)
OUTPUT_PASS(double, f64, exp, log)

/* ---- A whole epoch in one call -------------------------------------------
 * run_epoch_* runs a program (a list of operations fixed once per pack layout,
 * see torchhpo/engine/native/program.py) once per step. The program is int64
 * words: an opcode, its argument count, then its arguments; an argument v < 0
 * is the per-step value slots[s * n_slots + (-v - 1)] (the step's batch rows,
 * weights, loss and optimizer addresses), any other is used as it is. The
 * matmuls and the vectorised exp / ln / tanh are MKL's (cblas_?gemm_batch and
 * VML, the very functions ATen's bmm, exp, log and tanh call), resolved from
 * torch's own library and passed in fns: no Python runs between the steps. */

/* MKL_INT is int (LP64) or int64_t (ILP64) depending on how torch links MKL.
 * Sizes are passed as int64_t, by value and in arrays: a small non-negative
 * int64_t read as an int (its low half, little-endian) is the same number, so
 * either interface reads them right. The transpose flags are C enums (int). */
typedef void (*gemm_batch_fn)(int layout, const int *transa, const int *transb,
                              const int64_t *m, const int64_t *n,
                              const int64_t *k, const void *alpha,
                              const void **a, const int64_t *lda,
                              const void **b, const int64_t *ldb,
                              const void *beta, void **c, const int64_t *ldc,
                              int64_t groups, const int64_t *group_size);
typedef void (*vml_fn)(int64_t n, const void *a, void *r);

/* Copies the rows index[0:count) of each (address, bytes per model) pair to
 * scratch (save) or back (restore): the state a step must not change for the
 * models that do not take it. save and restore share their argument layout. */
static void keep_rows(const int64_t *a, int restore) {
  const int64_t *index = (const int64_t *)a[SAVE_INDEX];
  const int64_t count = a[SAVE_COUNT], n = a[SAVE_N];
  char *scratch = (char *)a[SAVE_SCRATCH];
  for (int64_t t = 0; t < n; ++t) {
    char *base = (char *)a[SAVE_ADDRESS + 2 * t];
    const int64_t bytes = a[SAVE_BYTES + 2 * t];
    for (int64_t c = 0; c < count; ++c, scratch += bytes) {
      char *row = base + index[c] * bytes;
      if (restore)
        memcpy(row, scratch, (size_t)bytes);
      else
        memcpy(scratch, row, (size_t)bytes);
    }
  }
}

#define RUN_EPOCH(T, SFX, EXP)                                                  \
  int run_epoch_##SFX(RUN_EPOCH_PARAMS(T)) {                                   \
    const gemm_batch_fn gemm = (gemm_batch_fn)fns[0];                          \
    const vml_fn vml_tanh = (vml_fn)fns[1], vml_exp = (vml_fn)fns[2],          \
                 vml_ln = (vml_fn)fns[3];                                      \
    const T one = 1, zero = 0;                                                 \
    int64_t a[MAX_ARGS];                                                       \
    for (int64_t s = 0; s < n_steps; ++s) {                                    \
      const int64_t *step = slots + s * n_slots;                               \
      for (int64_t pc = 0; pc < len;) {                                        \
        const int64_t op = prog[pc], n = prog[pc + 1];                         \
        if (n > MAX_ARGS) return -1;                                           \
        for (int64_t j = 0; j < n; ++j) {                                      \
          const int64_t v = prog[pc + 2 + j];                                  \
          a[j] = v < 0 ? step[-v - 1] : v;                                     \
        }                                                                      \
        pc += 2 + n;                                                           \
        switch (op) {                                                          \
          case OP_GATHER:                                                      \
            CALL_GATHER(T, SFX, a);                                            \
            break;                                                             \
          case OP_GEMM: {                                                      \
            const int ta = (int)a[GEMM_TA], tb = (int)a[GEMM_TB];              \
            gemm(101, &ta, &tb, &a[GEMM_M], &a[GEMM_N], &a[GEMM_K], &one,      \
                 (const void **)a[GEMM_A], &a[GEMM_LDA],                       \
                 (const void **)a[GEMM_B], &a[GEMM_LDB], &zero,                \
                 (void **)a[GEMM_C], &a[GEMM_LDC], 1, &a[GEMM_COUNT]);         \
            break;                                                             \
          }                                                                    \
          case OP_HIDDEN_FORWARD:                                              \
            CALL_HIDDEN_FORWARD(T, SFX, a);                                    \
            break;                                                             \
          case OP_TANH:                                                        \
            vml_tanh(a[TANH_N], (T *)a[TANH_X], (T *)a[TANH_X]);               \
            break;                                                             \
          case OP_LOGISTIC: {                                                  \
            T *z = (T *)a[LOGISTIC_X];                                         \
            for (int64_t j = 0; j < a[LOGISTIC_N]; ++j)                        \
              z[j] = 1 / (1 + EXP(-z[j]));                                     \
            break;                                                             \
          }                                                                    \
          case OP_SOFTMAX_SHIFT:                                               \
            CALL_SOFTMAX_SHIFT(T, SFX, a);                                     \
            break;                                                             \
          case OP_EXP:                                                         \
            vml_exp(a[EXP_N], (const T *)a[EXP_X], (T *)a[EXP_OUT]);           \
            break;                                                             \
          case OP_SOFTMAX_SUMS:                                                \
            CALL_SOFTMAX_SUMS(T, SFX, a);                                      \
            break;                                                             \
          case OP_LN:                                                          \
            vml_ln(a[LN_N], (const T *)a[LN_X], (T *)a[LN_OUT]);               \
            break;                                                             \
          case OP_SOFTMAX_DELTA:                                               \
            CALL_SOFTMAX_DELTA(T, SFX, a);                                     \
            break;                                                             \
          case OP_HIDDEN_BACKWARD:                                             \
            CALL_HIDDEN_BACKWARD(T, SFX, a);                                   \
            break;                                                             \
          case OP_ADAM:                                                        \
            CALL_ADAM(T, SFX, a);                                              \
            break;                                                             \
          case OP_SGD:                                                         \
            CALL_SGD(T, SFX, a);                                               \
            break;                                                             \
          case OP_OUTPUT:                                                      \
            CALL_OUTPUT_PASS(T, SFX, a);                                       \
            break;                                                             \
          case OP_SAVE:                                                        \
          case OP_RESTORE:                                                     \
            keep_rows(a, op == OP_RESTORE);                                    \
            break;                                                             \
          default:                                                             \
            return -2;                                                         \
        }                                                                      \
      }                                                                        \
    }                                                                          \
    return 0;                                                                  \
  }

RUN_EPOCH(float, f32, expf)
RUN_EPOCH(double, f64, exp)

/* Line i of the declaration this library was built from (interface.py), NULL
 * past the last: the loader compares it with its own before any call. */
const char *torchhpo_kernels_declaration(int64_t i) {
  int64_t n = 0;
  while (torchhpo_declared[n]) ++n;
  return i >= 0 && i < n ? torchhpo_declared[i] : 0;
}
