//! [`Tensor`], its borrowed views, and ndarray interop.

use super::dtype::{Element, FloatElement};
use super::shape::numel;
use crate::error::{try_vec, Error, Result};
use ndarray::{ArrayD, ArrayViewD, ArrayViewMutD, IxDyn};
use std::fmt;

/// An owned, row-major, contiguous tensor of `T`.
#[derive(Clone, PartialEq)]
pub struct Tensor<T: Element> {
    data: Vec<T>,
    shape: Vec<usize>,
}

/// A tensor borrowed from someone else's slice: no copy.
#[derive(Clone, Copy, PartialEq)]
pub struct TensorView<'a, T: Element> {
    data: &'a [T],
    shape: &'a [usize],
}

/// A mutable tensor borrowed from someone else's slice: no copy.
#[derive(PartialEq)]
pub struct TensorViewMut<'a, T: Element> {
    data: &'a mut [T],
    shape: &'a [usize],
}

fn check_shape(context: &'static str, shape: &[usize], len: usize) -> Result<()> {
    let expected = numel(shape)?;
    if expected != len {
        return Err(Error::ShapeMismatch { context, expected: vec![expected], actual: vec![len] });
    }
    Ok(())
}

impl<T: Element> Tensor<T> {
    /// Takes ownership of `data` as a tensor of `shape`; the element count must match.
    pub fn from_vec(shape: impl Into<Vec<usize>>, data: Vec<T>) -> Result<Self> {
        let shape = shape.into();
        check_shape("Tensor::from_vec", &shape, data.len())?;
        Ok(Tensor { data, shape })
    }

    /// A tensor of `shape` filled with `value`.
    pub fn full(shape: impl Into<Vec<usize>>, value: T) -> Result<Self> {
        let shape = shape.into();
        let data = try_vec(numel(&shape)?, value)?;
        Ok(Tensor { data, shape })
    }

    /// A tensor of `shape` filled with zeros.
    pub fn zeros(shape: impl Into<Vec<usize>>) -> Result<Self> {
        Self::full(shape, T::zero())
    }

    /// A tensor of `shape` whose element at each multi-index is `f(index)`, in row-major order.
    pub fn from_fn(shape: impl Into<Vec<usize>>, mut f: impl FnMut(&[usize]) -> T) -> Result<Self> {
        let shape = shape.into();
        let len = numel(&shape)?;
        let mut data = Vec::new();
        data.try_reserve_exact(len)
            .map_err(|_| Error::OutOfMemory { bytes: len.saturating_mul(std::mem::size_of::<T>()) })?;
        let mut index = vec![0usize; shape.len()];
        for _ in 0..len {
            data.push(f(&index));
            for axis in (0..shape.len()).rev() {
                index[axis] += 1;
                if index[axis] < shape[axis] {
                    break;
                }
                index[axis] = 0;
            }
        }
        Ok(Tensor { data, shape })
    }

    /// Copies a view into an owned tensor.
    pub fn from_view(view: TensorView<'_, T>) -> Result<Self> {
        let mut data = Vec::new();
        data.try_reserve_exact(view.data.len())
            .map_err(|_| Error::OutOfMemory { bytes: std::mem::size_of_val(view.data) })?;
        data.extend_from_slice(view.data);
        Ok(Tensor { data, shape: view.shape.to_vec() })
    }

    /// The shape, outermost dimension first.
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    /// Number of dimensions.
    pub fn ndim(&self) -> usize {
        self.shape.len()
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        self.data.len()
    }

    /// Whether the tensor has no elements.
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// The elements in row-major order.
    pub fn as_slice(&self) -> &[T] {
        &self.data
    }

    /// The elements in row-major order, mutable.
    pub fn as_mut_slice(&mut self) -> &mut [T] {
        &mut self.data
    }

    /// The elements as raw bytes (native endianness).
    pub fn as_bytes(&self) -> &[u8] {
        bytemuck::cast_slice(&self.data)
    }

    /// Gives back the element vector.
    pub fn into_vec(self) -> Vec<T> {
        self.data
    }

    /// The same elements under a new shape with the same element count.
    pub fn reshape(self, shape: impl Into<Vec<usize>>) -> Result<Self> {
        let shape = shape.into();
        check_shape("Tensor::reshape", &shape, self.data.len())?;
        Ok(Tensor { data: self.data, shape })
    }

    /// A borrowed view of the whole tensor.
    pub fn view(&self) -> TensorView<'_, T> {
        TensorView { data: &self.data, shape: &self.shape }
    }

    /// A mutable borrowed view of the whole tensor.
    pub fn view_mut(&mut self) -> TensorViewMut<'_, T> {
        TensorViewMut { data: &mut self.data, shape: &self.shape }
    }

    /// The tensor as an ndarray view, without copying.
    pub fn as_ndarray(&self) -> ArrayViewD<'_, T> {
        self.view().as_ndarray()
    }

    /// Moves the tensor into an ndarray array, without copying the elements.
    pub fn into_ndarray(self) -> ArrayD<T> {
        ArrayD::from_shape_vec(IxDyn(&self.shape), self.data)
            .expect("Tensor invariant: element count equals the shape's product")
    }

    /// Takes an ndarray array; moves its buffer when it is row-major contiguous, copies otherwise.
    pub fn from_ndarray(array: ArrayD<T>) -> Self {
        let shape = array.shape().to_vec();
        let data = if array.is_standard_layout() {
            let (data, _offset) = array.into_raw_vec_and_offset();
            data
        } else {
            array.iter().copied().collect()
        };
        Tensor { data, shape }
    }

    /// Converts every element to another float type, rounding to nearest even where it narrows.
    pub fn cast<U: FloatElement>(&self) -> Result<Tensor<U>>
    where
        T: FloatElement,
    {
        let mut data = Vec::new();
        data.try_reserve_exact(self.data.len())
            .map_err(|_| Error::OutOfMemory { bytes: self.data.len() * std::mem::size_of::<U>() })?;
        data.extend(self.data.iter().map(|&v| U::from_f32(v.to_f32())));
        Ok(Tensor { data, shape: self.shape.clone() })
    }
}

impl<'a, T: Element> TensorView<'a, T> {
    /// Wraps a caller's slice as a tensor of `shape`, without copying; the element count must match.
    pub fn new(data: &'a [T], shape: &'a [usize]) -> Result<Self> {
        check_shape("TensorView::new", shape, data.len())?;
        Ok(TensorView { data, shape })
    }

    /// The shape.
    pub fn shape(&self) -> &'a [usize] {
        self.shape
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        self.data.len()
    }

    /// Whether the view has no elements.
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// The borrowed elements.
    pub fn as_slice(&self) -> &'a [T] {
        self.data
    }

    /// The elements as raw bytes.
    pub fn as_bytes(&self) -> &'a [u8] {
        bytemuck::cast_slice(self.data)
    }

    /// The view as an ndarray view, without copying.
    pub fn as_ndarray(&self) -> ArrayViewD<'a, T> {
        ArrayViewD::from_shape(IxDyn(self.shape), self.data)
            .expect("TensorView invariant: element count equals the shape's product")
    }

    /// Copies the view into an owned tensor.
    pub fn to_tensor(&self) -> Result<Tensor<T>> {
        Tensor::from_view(*self)
    }
}

impl<'a, T: Element> TensorViewMut<'a, T> {
    /// Wraps a caller's mutable slice as a tensor of `shape`, without copying.
    pub fn new(data: &'a mut [T], shape: &'a [usize]) -> Result<Self> {
        check_shape("TensorViewMut::new", shape, data.len())?;
        Ok(TensorViewMut { data, shape })
    }

    /// The shape.
    pub fn shape(&self) -> &[usize] {
        self.shape
    }

    /// The borrowed elements.
    pub fn as_slice(&self) -> &[T] {
        self.data
    }

    /// The borrowed elements, mutable.
    pub fn as_mut_slice(&mut self) -> &mut [T] {
        self.data
    }

    /// A read-only view of the same elements.
    pub fn as_view(&self) -> TensorView<'_, T> {
        TensorView { data: self.data, shape: self.shape }
    }

    /// The view as a mutable ndarray view, without copying.
    pub fn as_ndarray_mut(&mut self) -> ArrayViewMutD<'_, T> {
        ArrayViewMutD::from_shape(IxDyn(self.shape), self.data)
            .expect("TensorViewMut invariant: element count equals the shape's product")
    }
}

impl<'a, T: Element> TryFrom<&'a ArrayD<T>> for TensorView<'a, T> {
    type Error = Error;

    /// Borrows a row-major contiguous ndarray array; any other layout is refused.
    fn try_from(array: &'a ArrayD<T>) -> Result<Self> {
        let data = array.as_slice().ok_or_else(|| {
            Error::invalid("array", format!("strides {:?}", array.strides()), "not row-major contiguous")
        })?;
        Ok(TensorView { data, shape: array.shape() })
    }
}

const DEBUG_EDGE: usize = 3;

fn fmt_data<T: Element>(f: &mut fmt::Formatter<'_>, data: &[T], shape: &[usize]) -> fmt::Result {
    match shape.split_first() {
        None => write!(f, "{}", data.first().copied().unwrap_or_default()),
        Some((&n, rest)) => {
            let stride = data.len().checked_div(n).unwrap_or(0);
            f.write_str("[")?;
            for i in 0..n {
                if n > 2 * DEBUG_EDGE && i == DEBUG_EDGE {
                    f.write_str("..., ")?;
                }
                if n > 2 * DEBUG_EDGE && (DEBUG_EDGE..n - DEBUG_EDGE).contains(&i) {
                    continue;
                }
                fmt_data(f, &data[i * stride..(i + 1) * stride], rest)?;
                if i + 1 < n {
                    f.write_str(", ")?;
                }
            }
            f.write_str("]")
        }
    }
}

impl<T: Element> fmt::Debug for Tensor<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.view(), f)
    }
}

impl<T: Element> fmt::Debug for TensorView<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Tensor<{}>{:?} ", T::DTYPE, self.shape)?;
        fmt_data(f, self.data, self.shape)
    }
}

impl<T: Element> fmt::Debug for TensorViewMut<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.as_view(), f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use half::{bf16, f16};
    use proptest::prelude::*;

    #[test]
    fn from_vec_checks_the_element_count() {
        assert!(Tensor::from_vec([2, 3], vec![0f32; 6]).is_ok());
        let err = Tensor::from_vec([2, 3], vec![0f32; 5]).unwrap_err();
        assert!(matches!(err, Error::ShapeMismatch { .. }), "{err}");
    }

    #[test]
    fn overflowing_shapes_are_errors() {
        assert!(matches!(Tensor::<f32>::zeros([usize::MAX, 2]), Err(Error::Overflow { .. })));
        assert!(matches!(Tensor::<u8>::zeros([1 << 62, 1 << 3]), Err(Error::Overflow { .. })));
        assert!(matches!(Tensor::<u8>::zeros([usize::MAX / 2, 3]).map(|_| ()), Err(Error::Overflow { .. })));
    }

    #[test]
    fn huge_but_representable_shapes_fail_allocation_cleanly() {
        let err = Tensor::<f32>::zeros([usize::MAX / 8]).unwrap_err();
        assert!(matches!(err, Error::OutOfMemory { .. }), "{err}");
    }

    #[test]
    fn from_fn_visits_row_major_indices() {
        let t = Tensor::from_fn([2, 3], |i| (10 * i[0] + i[1]) as i32).unwrap();
        assert_eq!(t.as_slice(), &[0, 1, 2, 10, 11, 12]);
        let scalar = Tensor::from_fn(Vec::new(), |i| i.len() as u8 + 7).unwrap();
        assert_eq!(scalar.as_slice(), &[7]);
        let empty = Tensor::from_fn([3, 0], |_| 1u8).unwrap();
        assert!(empty.is_empty());
    }

    #[test]
    fn views_alias_the_callers_buffer() {
        let mut buf = vec![1.0f32, 2.0, 3.0, 4.0];
        let shape = [2, 2];
        {
            let mut v = TensorViewMut::new(&mut buf, &shape).unwrap();
            v.as_mut_slice()[3] = 9.0;
            v.as_ndarray_mut()[[0, 1]] = 5.0;
        }
        let view = TensorView::new(&buf, &shape).unwrap();
        assert_eq!(view.as_slice().as_ptr(), buf.as_ptr());
        assert_eq!(view.as_ndarray()[[1, 1]], 9.0);
        assert_eq!(buf, vec![1.0, 5.0, 3.0, 9.0]);
        assert!(TensorView::new(&buf, &[3]).is_err());
    }

    #[test]
    fn ndarray_round_trip_moves_the_buffer() {
        let t = Tensor::from_vec([2, 3], vec![1i8, 2, 3, 4, 5, 6]).unwrap();
        let ptr = t.as_slice().as_ptr();
        let a = t.into_ndarray();
        assert_eq!(a.as_ptr(), ptr);
        assert_eq!(a[[1, 0]], 4);
        let back = Tensor::from_ndarray(a);
        assert_eq!(back.as_slice().as_ptr(), ptr);
        assert_eq!(back.shape(), &[2, 3]);
    }

    #[test]
    fn from_ndarray_copies_a_transposed_array_in_logical_order() {
        let a = ArrayD::from_shape_vec(IxDyn(&[2, 3]), vec![1, 2, 3, 4, 5, 6]).unwrap();
        let t = Tensor::<i32>::from_ndarray(a.t().to_owned());
        assert_eq!(t.shape(), &[3, 2]);
        assert_eq!(t.as_slice(), &[1, 4, 2, 5, 3, 6]);
        let column_major = a.t().to_owned();
        assert!(!column_major.is_standard_layout());
        assert!(TensorView::try_from(&column_major).is_err());
        let view = TensorView::try_from(&a).unwrap();
        assert_eq!(view.as_slice().as_ptr(), a.as_ptr());
    }

    #[test]
    fn byte_view_is_native_endian() {
        let t = Tensor::from_vec([2], vec![1u16, 0x0302]).unwrap();
        let expected: Vec<u8> = [1u16, 0x0302].iter().flat_map(|v| v.to_ne_bytes()).collect();
        assert_eq!(t.as_bytes(), expected.as_slice());
    }

    #[test]
    fn debug_is_readable_and_truncated() {
        let t = Tensor::from_vec([2, 2], vec![1.5f32, 2.0, 3.0, 4.0]).unwrap();
        assert_eq!(format!("{t:?}"), "Tensor<f32>[2, 2] [[1.5, 2], [3, 4]]");
        let long = Tensor::from_fn([100], |i| i[0] as u8).unwrap();
        assert_eq!(format!("{long:?}"), "Tensor<u8>[100] [0, 1, 2, ..., 97, 98, 99]");
    }

    #[test]
    fn f16_cast_rounds_to_nearest_even() {
        // 1 + 2^-11 lies exactly between two f16 values (1 and 1 + 2^-10): ties go to the even one, 1.
        let t = Tensor::from_vec([3], vec![1.0 + 2f32.powi(-11), 70000.0, f32::NAN]).unwrap();
        let h = t.cast::<f16>().unwrap();
        assert_eq!(h.as_slice()[0].to_bits(), 0x3C00);
        assert_eq!(h.as_slice()[1], f16::INFINITY);
        assert!(h.as_slice()[2].is_nan());
    }

    proptest! {
        #[test]
        fn reshape_keeps_data(data in proptest::collection::vec(any::<f32>(), 0..64), split in 1usize..8) {
            let n = data.len();
            let t = Tensor::from_vec([n], data.clone()).unwrap();
            let shape = if n % split == 0 { vec![split, n / split] } else { vec![n, 1] };
            let r = t.reshape(shape.clone()).unwrap();
            prop_assert_eq!(r.shape(), shape.as_slice());
            prop_assert_eq!(r.as_bytes(), bytemuck::cast_slice::<f32, u8>(&data));
        }

        #[test]
        fn f16_and_bf16_to_f32_and_back_is_lossless(bits in any::<u16>()) {
            let h = Tensor::from_vec([1], vec![f16::from_bits(bits)]).unwrap();
            let back = h.cast::<f32>().unwrap().cast::<f16>().unwrap();
            let (a, b) = (h.as_slice()[0], back.as_slice()[0]);
            prop_assert!(a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan()));
            let g = Tensor::from_vec([1], vec![bf16::from_bits(bits)]).unwrap();
            let back = g.cast::<f32>().unwrap().cast::<bf16>().unwrap();
            let (a, b) = (g.as_slice()[0], back.as_slice()[0]);
            prop_assert!(a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan()));
        }

        #[test]
        fn ndarray_round_trip(rows in 0usize..6, cols in 0usize..6, seed in any::<i32>()) {
            let t = Tensor::from_fn([rows, cols], |i| seed.wrapping_add((i[0] * 31 + i[1]) as i32)).unwrap();
            let back = Tensor::from_ndarray(t.clone().into_ndarray());
            prop_assert_eq!(back, t);
        }
    }
}
