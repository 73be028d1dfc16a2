//! C ABI: model.
