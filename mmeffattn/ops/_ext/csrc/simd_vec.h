// GCC vectors of kLanes values (one AVX-512 register of floats where the
// build targets AVX-512, else one AVX2 register) and their unaligned loads
// and stores, shared by the CPU kernels.
#pragma once

#include <cstring>

namespace mmeffattn {

#ifdef __AVX512F__
constexpr int kLanes = 16;
#else
constexpr int kLanes = 8;
#endif

template <typename T>
struct Vec {
  typedef T type __attribute__((vector_size(kLanes * sizeof(T))));
};

template <typename T>
__attribute__((always_inline)) inline typename Vec<T>::type loadu(
    const T* p) {
  typename Vec<T>::type v;
  std::memcpy(&v, p, sizeof(v));
  return v;
}

template <typename T>
__attribute__((always_inline)) inline void storeu(
    T* p, const typename Vec<T>::type& v) {
  std::memcpy(p, &v, sizeof(v));
}

}  // namespace mmeffattn
