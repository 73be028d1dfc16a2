//! Bit-exact agreement with ONNX Runtime's QuantizeLinear, DequantizeLinear and DynamicQuantizeLinear,
//! on vectors ONNX Runtime itself produced (`tests/data/make_onnx_vectors.py` -> `onnx_vectors.txt`).

use greenai::kernels::{convert, Isa};
use greenai::quant::{
    dequantize_into, onnx, quantize_into, Granularity, Mode, QSlice, QSliceMut, QType, QuantParams, QuantSpec,
};

fn floats(field: &str) -> Vec<f32> {
    field.split_whitespace().map(|h| f32::from_bits(u32::from_str_radix(h, 16).expect("hex float"))).collect()
}

fn ints(field: &str) -> Vec<i32> {
    field.split_whitespace().map(|v| v.parse().expect("integer")).collect()
}

fn qtype(name: &str) -> QType {
    match name {
        "i4" => QType::I4,
        "u4" => QType::U4,
        "i8" => QType::I8,
        "u8" => QType::U8,
        "i16" => QType::I16,
        "u16" => QType::U16,
        other => panic!("unknown type {other}"),
    }
}

struct Case {
    op: String,
    qtype: QType,
    params: QuantParams,
    shape: Vec<usize>,
    a: String,
    b: String,
}

fn parse(line: &str) -> Case {
    let fields: Vec<&str> = line.split('|').map(str::trim).collect();
    let head: Vec<&str> = fields[0].split_whitespace().collect();
    let qt = qtype(head[1]);
    let shape: Vec<usize> = head[3].split(',').map(|d| d.parse().unwrap()).collect();
    let block: usize = head[4].parse().unwrap();
    let granularity = match (head[2], block) {
        ("-", _) => Granularity::PerTensor,
        (axis, 0) => Granularity::PerAxis { axis: axis.parse().unwrap() },
        (axis, block) => Granularity::PerBlock { axis: axis.parse().unwrap(), block },
    };
    // ONNX QuantizeLinear: full range, half to even, x / scale in f32.
    let spec =
        QuantSpec { narrow_range: false, ..QuantSpec::new(qt, Mode::Affine) }.with_granularity(granularity);
    let param_shape = granularity.param_shape(&shape).unwrap();
    let params = QuantParams::new(spec, param_shape, floats(fields[1]), ints(fields[2])).unwrap();
    Case {
        op: head[0].to_string(),
        qtype: qt,
        params,
        shape,
        a: fields[3].to_string(),
        b: fields[4].to_string(),
    }
}

/// Quantizes through the typed buffer of `qtype` and returns the values as i32.
fn quantize(x: &[f32], shape: &[usize], params: &QuantParams, qt: QType) -> Vec<i32> {
    let n = x.len();
    match qt {
        QType::I8 => {
            let mut y = vec![0i8; n];
            quantize_into(x, shape, params, QSliceMut::I8(&mut y)).unwrap();
            y.iter().map(|&v| v.into()).collect()
        }
        QType::U8 => {
            let mut y = vec![0u8; n];
            quantize_into(x, shape, params, QSliceMut::U8(&mut y)).unwrap();
            y.iter().map(|&v| v.into()).collect()
        }
        QType::I16 => {
            let mut y = vec![0i16; n];
            quantize_into(x, shape, params, QSliceMut::I16(&mut y)).unwrap();
            y.iter().map(|&v| v.into()).collect()
        }
        QType::U16 => {
            let mut y = vec![0u16; n];
            quantize_into(x, shape, params, QSliceMut::U16(&mut y)).unwrap();
            y.iter().map(|&v| v.into()).collect()
        }
        QType::I4 | QType::U4 => {
            let signed = qt == QType::I4;
            let mut packed = vec![0u8; greenai::quant::packed_len(n)];
            let out = if signed { QSliceMut::I4(&mut packed) } else { QSliceMut::U4(&mut packed) };
            quantize_into(x, shape, params, out).unwrap();
            let mut v = vec![0i8; n];
            greenai::quant::unpack_4bit(&packed, signed, &mut v).unwrap();
            v.iter().map(|&v| v.into()).collect()
        }
    }
}

fn dequantize(q: &[i32], shape: &[usize], params: &QuantParams, qt: QType) -> Vec<f32> {
    let mut x = vec![0f32; q.len()];
    let (i8s, u8s, i16s, u16s): (Vec<i8>, Vec<u8>, Vec<i16>, Vec<u16>) = (
        q.iter().map(|&v| v as i8).collect(),
        q.iter().map(|&v| v as u8).collect(),
        q.iter().map(|&v| v as i16).collect(),
        q.iter().map(|&v| v as u16).collect(),
    );
    let mut packed = vec![0u8; greenai::quant::packed_len(q.len())];
    if qt.bits() == 4 {
        greenai::quant::pack_4bit(&i8s, qt == QType::I4, &mut packed).unwrap();
    }
    let slice = match qt {
        QType::I8 => QSlice::I8(&i8s),
        QType::U8 => QSlice::U8(&u8s),
        QType::I16 => QSlice::I16(&i16s),
        QType::U16 => QSlice::U16(&u16s),
        QType::I4 => QSlice::I4(&packed),
        QType::U4 => QSlice::U4(&packed),
    };
    dequantize_into(slice, shape, params, &mut x).unwrap();
    x
}

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

#[test]
fn matches_onnx_runtime_bit_for_bit() {
    let text = include_str!("data/onnx_vectors.txt");
    let (mut quantized, mut dequantized, mut dynamic) = (0, 0, 0);
    for line in text.lines().filter(|l| !l.starts_with('#') && !l.trim().is_empty()) {
        if let Some(rest) = line.strip_prefix("dynamic") {
            let f: Vec<&str> = rest.split('|').map(str::trim).collect();
            let x = floats(f[1]);
            let expected_y: Vec<u8> = ints(f[2]).iter().map(|&v| v as u8).collect();
            let expected_scale = floats(f[3])[0];
            let expected_zp = ints(f[4])[0] as u8;
            let mut y = vec![0u8; x.len()];
            let (scale, zp) = onnx::dynamic_quantize_linear(&x, &mut y).unwrap();
            assert_eq!((scale.to_bits(), zp), (expected_scale.to_bits(), expected_zp), "{line}");
            assert_eq!(y, expected_y, "{line}");
            dynamic += 1;
            continue;
        }
        let case = parse(line);
        match case.op.as_str() {
            "quantize" => {
                let x = floats(&case.a);
                let expected = ints(&case.b);
                assert_eq!(quantize(&x, &case.shape, &case.params, case.qtype), expected, "{line}");
                // The per-tensor i8/u8 kernels on every path this machine has.
                if case.params.scales().len() == 1 && matches!(case.qtype, QType::I8 | QType::U8) {
                    let (s, z) = (case.params.scales()[0], case.params.zero_points()[0]);
                    for isa in Isa::available() {
                        let got: Vec<i32> = if case.qtype == QType::I8 {
                            let mut y = vec![0i8; x.len()];
                            convert::quantize_i8_on(isa, &x, s, z as i8, &mut y).unwrap();
                            y.iter().map(|&v| v.into()).collect()
                        } else {
                            let mut y = vec![0u8; x.len()];
                            convert::quantize_u8_on(isa, &x, s, z as u8, &mut y).unwrap();
                            y.iter().map(|&v| v.into()).collect()
                        };
                        assert_eq!(got, expected, "{isa:?}: {line}");
                    }
                }
                quantized += 1;
            }
            "dequantize" => {
                let q = ints(&case.a);
                let expected = floats(&case.b);
                assert_eq!(
                    bits(&dequantize(&q, &case.shape, &case.params, case.qtype)),
                    bits(&expected),
                    "{line}"
                );
                dequantized += 1;
            }
            other => panic!("unknown op {other}"),
        }
    }
    println!(
        "ONNX Runtime vectors: {quantized} quantize, {dequantized} dequantize, {dynamic} dynamic cases agree"
    );
    assert!(quantized >= 20 && dequantized >= 13 && dynamic >= 7);
}

#[test]
fn per_axis_i8_entry_point_matches_the_vectors() {
    let text = include_str!("data/onnx_vectors.txt");
    let mut checked = 0;
    for line in text.lines().filter(|l| l.starts_with("quantize i8 ") && !l.starts_with("quantize i8 - ")) {
        let case = parse(line);
        let Granularity::PerAxis { axis } = case.params.spec().granularity else { continue };
        let x = floats(&case.a);
        let zps: Vec<i8> = case.params.zero_points().iter().map(|&z| z as i8).collect();
        let mut y = vec![0i8; x.len()];
        onnx::quantize_per_axis_i8(&x, &case.shape, axis, case.params.scales(), &zps, &mut y).unwrap();
        assert_eq!(y.iter().map(|&v| i32::from(v)).collect::<Vec<_>>(), ints(&case.b), "{line}");
        checked += 1;
    }
    assert_eq!(checked, 3);
}
