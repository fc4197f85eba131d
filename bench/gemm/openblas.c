/* OpenBLAS side of the GEMM benchmark: times cblas_sgemm (row-major) at one shape and prints the
   seconds of each timed run on one line. Usage: openblas M K N transA transB warmup reps */
#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

extern char* openblas_get_corename(void);
extern char* openblas_get_config(void);

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static float* random_matrix(size_t n, unsigned seed) {
  float* p = aligned_alloc(64, (n * sizeof(float) + 63) / 64 * 64);
  if (!p) { fprintf(stderr, "out of memory\n"); exit(1); }
  for (size_t i = 0; i < n; i++) {
    seed = seed * 1664525u + 1013904223u;
    p[i] = (float)(seed >> 8) / 16777216.0f * 2.0f - 1.0f;
  }
  return p;
}

int main(int argc, char** argv) {
  if (argc == 2 && strcmp(argv[1], "--info") == 0) {
    printf("%s | %s\n", openblas_get_corename(), openblas_get_config());
    return 0;
  }
  if (argc != 8) { fprintf(stderr, "usage: openblas M K N transA transB warmup reps\n"); return 2; }
  int M = atoi(argv[1]), K = atoi(argv[2]), N = atoi(argv[3]);
  int ta = atoi(argv[4]), tb = atoi(argv[5]), warmup = atoi(argv[6]), reps = atoi(argv[7]);
  /* Stored A is (M, K), or (K, M) with transA; B is (K, N), or (N, K) with transB. */
  int lda = ta ? M : K, ldb = tb ? K : N;
  float* A = random_matrix((size_t)M * K, 1);
  float* B = random_matrix((size_t)K * N, 2);
  float* C = random_matrix((size_t)M * N, 3);
  for (int r = 0; r < warmup + reps; r++) {
    double t0 = now();
    cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, M, N, K, 1.0f, A, lda,
                B, ldb, 0.0f, C, N);
    double t = now() - t0;
    if (r >= warmup) printf("%.9f ", t);
  }
  printf("\n");
  free(A); free(B); free(C);
  return 0;
}
