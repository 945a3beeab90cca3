// EPCOMM_HOST_DEVICE marks code shared by the CPU reference and the kernels. It is empty outside
// nvcc, so src/core never needs a CUDA header.
#pragma once

#if defined(__CUDACC__)
#define EPCOMM_HOST_DEVICE __host__ __device__ __forceinline__
#else
#define EPCOMM_HOST_DEVICE inline
#endif
