//! Display of the report types: human units, values worked out by hand.

use greenai::energy::{Carbon, Energy, Footprint, InferenceFootprint};
use greenai::flops::{human_bytes, si_unit, Compression, Cost, Precision, Sparsity};
use greenai::quant::{Mode, Preset, QTensor, QType, QuantLinear, QuantSpec};
use greenai::Tensor;

#[test]
fn si_unit_picks_the_prefix_and_three_digits() {
    assert_eq!(si_unit(4.09e9, "MACs"), "4.09 GMACs");
    assert_eq!(si_unit(0.0123, "J"), "12.3 mJ");
    assert_eq!(si_unit(999.96, "J"), "1.00 kJ");
    assert_eq!(si_unit(1.5, "J"), "1.50 J");
    assert_eq!(si_unit(2.5e-7, "J"), "250 nJ");
    assert_eq!(si_unit(2.5e-6, "J"), "2.50 \u{b5}J");
    assert_eq!(si_unit(0.0, "J"), "0 J");
    assert_eq!(human_bytes(512), "512 B");
    assert_eq!(human_bytes(90_800_000), "90.8 MB");
}

#[test]
fn energy_and_footprint_print_with_units() {
    let e = Energy { compute_j: 0.0123, dram_j: 1.5, sram_j: 0.0 };
    assert_eq!(e.to_string(), "1.51 J (compute 12.3 mJ, DRAM 1.50 J, SRAM 0 J)");
    // 3600 J is 1 Wh; 2500 g is 2.5 kg.
    let f = Footprint { joules: 3600.0, kwh: 0.001, gco2e: 2500.0 };
    assert_eq!(f.to_string(), "3.60 kJ, 1.00 Wh, 2.500 kgCO2e");
    // 36 J per inference of a batch of 10 at 500 g/kWh: 0.01 Wh and 5 mg each; a million: 10 kWh, 5 kg.
    let batch = Energy { compute_j: 360.0, dram_j: 0.0, sram_j: 0.0 };
    let carbon = Carbon { g_per_kwh: 500.0, pue: 1.0 };
    let fp = InferenceFootprint::new(&batch, 10, &carbon).unwrap();
    assert_eq!(
        fp.to_string(),
        "per inference: 36.0 J, 10.0 mWh, 5.00 mgCO2e; per million: 36.0 MJ, 10.0 kWh, 5.000 kgCO2e"
    );
    assert_eq!(carbon.to_string(), "500 gCO2e/kWh, PUE 1.00");
}

#[test]
fn cost_and_compression_print_without_debug_strings() {
    let c = Cost {
        macs: 2_000_000,
        flops: 4_100_000,
        params: 768,
        weight_bytes: 1536,
        weight_read_bytes: 1536,
        act_read_bytes: 500,
        act_written_bytes: 500,
    };
    assert_eq!(
        c.to_string(),
        "2.00 MMACs, 4.10 MFLOPs, 768 params, 1.54 kB of weights (1.54 kB read), 1.00 kB of activations"
    );
    let comp = Compression::dense(Precision::Int8).with_sparsity(Sparsity::NM { n: 2, m: 4 }).with_rank(64);
    assert_eq!(
        comp.to_string(),
        format!("{} weights, {} activations, 2:4 sparse, rank 64", Precision::Int8, Precision::Int8)
    );
    assert!(!comp.to_string().contains("None") && !comp.to_string().contains("Dense"));
}

#[test]
fn qtensor_becomes_a_linear_layer() {
    // Per-channel weights: the layer's scales are the tensor's; a 3-D or int4 tensor is refused.
    let w = Tensor::from_vec([2, 4], vec![0.5f32, -1.0, 0.25, 0.0, 2.0, 0.0, -0.5, 1.0]).unwrap();
    let q = QTensor::quantize_min_max(&w, QuantSpec::preset(Preset::PyTorchWeightI8PerChannel)).unwrap();
    let layer = QuantLinear::try_from(&q).unwrap();
    assert_eq!((layer.in_features(), layer.out_features()), (4, 2));
    assert_eq!(layer.scales(), q.params().scales());
    // Affine per-tensor u8 is not int8; affine per-tensor i8 keeps its zero point.
    let u8q = QTensor::quantize_min_max(&w, QuantSpec::preset(Preset::OnnxActivationU8)).unwrap();
    assert!(u8q.to_linear(None).is_err());
    let affine = QTensor::quantize_min_max(&w, QuantSpec::new(QType::I8, Mode::Affine)).unwrap();
    let layer = affine.to_linear(Some(&[1.0, -1.0])).unwrap();
    let mut y = [0f32; 2];
    layer.forward(&[1.0, 0.0, 0.0, 0.0], 1, greenai::quant::ActivationQuant::I8Symmetric, &mut y).unwrap();
    // w[0][0] + 1 and w[1][0] - 1, within a quantization step of each.
    assert!((y[0] - 1.5).abs() < 0.02 && (y[1] - 1.0).abs() < 0.02, "{y:?}");
    let cube = Tensor::from_vec([1, 2, 4], w.as_slice().to_vec()).unwrap();
    let cube = QTensor::quantize_min_max(&cube, QuantSpec::new(QType::I8, Mode::Symmetric)).unwrap();
    assert!(cube.to_linear(None).is_err());
}
