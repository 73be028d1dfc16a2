//! C ABI: quant.
