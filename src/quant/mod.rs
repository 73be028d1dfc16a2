//! Quantization: specs, parameters, quantize/dequantize, calibration, fake-quant and error metrics.
