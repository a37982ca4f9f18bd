/* Fused CPU passes of a pack's training step (see torchhpo/engine/native/__init__.py).
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
#include <string.h>

#define LANES 16

/* Rows idx of X (n, f) into x (r, f); columns idx of Y (k, n) into y (k, r). */
#define GATHER(T, SFX)                                                          \
  void gather_##SFX(const T *X, int64_t f, const T *Y, int64_t k, int64_t n,  \
                    const int64_t *idx, int64_t r, T *x, T *y) {              \
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
  void softmax_shift_##SFX(T *z, const T *bias, int64_t bias_stride,          \
                           int64_t M, int64_t K, int64_t B, T *mx) {          \
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
  void softmax_sums_##SFX(const T *e, int64_t M, int64_t K, int64_t B,        \
                          T *sums) {                                          \
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
  void softmax_delta_##SFX(T *z, T *e, const T *s, const T *ls, const T *y,   \
                           int64_t y_model, int64_t y_class, const T *w,       \
                           const T *w_scaled, const uint8_t *pad, int64_t M,   \
                           int64_t K, int64_t B, T eps, T *loss, T *bgrad,     \
                           int64_t bgrad_stride) {                            \
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
  void adam_##SFX(T *p, T *m, T *v, const T *gc, int64_t gc_stride,           \
                  const T *gb, int64_t gb_stride, int64_t M, int64_t rows,     \
                  int64_t cols, const T *alpha, const T *b1, const T *omb1,    \
                  const T *b2, const T *omb2, const T *eps, const T *lr,       \
                  double *step, double *squares, int accumulate) {             \
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
  void sgd_##SFX(T *p, T *vel, const T *gc, int64_t gc_stride, const T *gb,   \
                 int64_t gb_stride, int64_t M, int64_t rows, int64_t cols,     \
                 const T *alpha, const T *lr, const T *mu, int nesterov,       \
                 double *squares, int accumulate) {                            \
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

/* The version of this file's interface: the loader checks it. */
int torchhpo_kernels_version(void) { return 2; }
