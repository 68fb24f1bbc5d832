// GCC vectors of 8 values (one AVX2 register of floats, two of doubles) and
// their unaligned loads and stores, shared by the CPU kernels.
#pragma once

#include <cstring>

namespace mmeffattn {

constexpr int kLanes = 8;

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
