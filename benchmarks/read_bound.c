/* The read half of the bandwidth bound (benchmarks/common.py `ReadBandwidth`): read `n`
 * bytes on `nthreads` OpenMP threads, each thread its contiguous share as `streams`
 * sequential runs side by side (the way gpt2kit's decode kernels read weights: hardware
 * prefetchers track several streams, and one stream per core does not saturate the memory
 * system on every CPU). Returns an OR of everything read so the loads cannot be dropped.
 * Built by common.py with the decode kernels' compiler and flags; benchmark-only. */
#include <stdint.h>
#include <string.h>
#include <omp.h>

typedef uint64_t v8u64 __attribute__((vector_size(64)));

uint64_t read_bound(const unsigned char *buf, int64_t n, int streams, int nthreads) {
    uint64_t total = 0;
    #pragma omp parallel num_threads(nthreads) reduction(| : total)
    {
        const int64_t tid = omp_get_thread_num(), nth = omp_get_num_threads();
        const int64_t blocks = n / 64, b0 = blocks * tid / nth, b1 = blocks * (tid + 1) / nth;
        const int64_t per = (b1 - b0) / streams;
        v8u64 acc[8] = {{0}};
        for (int64_t i = 0; i < per; i++)
            for (int s = 0; s < streams && s < 8; s++) {
                v8u64 v;
                memcpy(&v, buf + 64 * (b0 + s * per + i), 64);
                acc[s] |= v;
            }
        for (int64_t b = b0 + streams * per; b < b1; b++) {
            v8u64 v;
            memcpy(&v, buf + 64 * b, 64);
            acc[0] |= v;
        }
        for (int s = 0; s < 8; s++)
            for (int j = 0; j < 8; j++) total |= acc[s][j];
    }
    return total;
}
