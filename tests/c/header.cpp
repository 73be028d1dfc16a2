// The header compiles as C++17 and the ABI is usable from C++ without casts.
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <memory>
#include <vector>

#include "greenai.h"

namespace {
struct TensorDeleter {
    void operator()(greenai_tensor *t) const noexcept { greenai_tensor_free(t); }
};
using TensorPtr = std::unique_ptr<greenai_tensor, TensorDeleter>;

int failures = 0;
void check(bool ok, const char *what) {
    if (!ok) {
        std::cerr << "CHECK failed: " << what << " (last error: " << greenai_last_error_message() << ")\n";
        ++failures;
    }
}
}  // namespace

int main() {
    const std::vector<size_t> shape{4, 2};
    const std::vector<int32_t> values{1, -2, 3, -4, 5, -6, 7, -8};
    greenai_tensor *raw = nullptr;
    check(greenai_tensor_from_data(GREENAI_DTYPE_I32, shape.data(), shape.size(), values.data(),
                                   values.size() * sizeof(int32_t), &raw) == GREENAI_OK,
          "from_data");
    TensorPtr t(raw);
    void *data = nullptr;
    check(greenai_tensor_data(t.get(), &data) == GREENAI_OK, "data");
    check(std::memcmp(data, values.data(), values.size() * sizeof(int32_t)) == 0, "data equal");
    check(greenai_tensor_new(GREENAI_DTYPE_I32, nullptr, 1, &raw) == GREENAI_ERR_NULL_POINTER, "null shape");
    check(std::strlen(greenai_last_error_message()) > 0, "message set");
    return failures == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
