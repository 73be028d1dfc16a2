//! Knowledge-distillation losses with analytic gradients.
//!
//! - [`kd_loss`]: Hinton et al. (2015),
//!   `L = alpha T^2 KL(softmax(t/T) || softmax(s/T)) + (1 - alpha) CE(s, y)` over `B x C` logits,
//!   with `dL/ds = [alpha T (softmax(s/T) - softmax(t/T)) + (1 - alpha)(softmax(s) - onehot(y))] / B`,
//!   both from one fused, vectorised pass per row ([`kd_loss_seq`] is the `B x S x C` form with
//!   a token mask).
//! - Feature losses: [`mse_loss`] (FitNets), [`cosine_embedding_loss`] with target 1
//!   (DistilBERT), [`attention_transfer_loss`] (Zagoruyko & Komodakis).
//!
//! The reduction is always explicit ([`Reduction`]): a mean over rows (tokens, samples), never
//! over rows times classes. Inputs are validated in full before any output is written.

use crate::error::{checked_product, try_vec};
use crate::kernels::math::check_finite;
use crate::kernels::math::{self, HardExp, KdStore};
use crate::kernels::Isa;
use crate::{Error, Result};

/// How per-row losses are combined.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Reduction {
    /// Mean over rows (the batch, or the kept tokens): the gradient is divided by their count.
    #[default]
    Mean,
    /// Sum over rows.
    Sum,
}

impl Reduction {
    /// The divisor for `rows` rows (1 for a sum; at least 1).
    fn divisor(self, rows: usize) -> f64 {
        match self {
            Reduction::Mean => rows.max(1) as f64,
            Reduction::Sum => 1.0,
        }
    }
}

/// The settings of the Hinton KD loss.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct KdParams {
    /// Softmax temperature `T`, positive and finite.
    pub temperature: f32,
    /// Weight of the soft (teacher) term, in `[0, 1]`; `1 - alpha` weighs the hard-label term.
    pub alpha: f32,
    /// How rows are combined.
    pub reduction: Reduction,
}

impl KdParams {
    /// Temperature and alpha, batch-mean reduction.
    pub fn new(temperature: f32, alpha: f32) -> Self {
        KdParams { temperature, alpha, reduction: Reduction::Mean }
    }

    /// The same settings with another reduction.
    pub fn with_reduction(self, reduction: Reduction) -> Self {
        KdParams { reduction, ..self }
    }

    /// Fails unless `T` is positive and finite and `alpha` is in `[0, 1]`.
    pub fn validate(&self) -> Result<()> {
        if !(self.temperature.is_finite() && self.temperature > 0.0) {
            return Err(Error::invalid("temperature", self.temperature, "must be positive and finite"));
        }
        if !(0.0..=1.0).contains(&self.alpha) {
            return Err(Error::invalid("alpha", self.alpha, "must be in [0, 1]"));
        }
        Ok(())
    }

    /// Whether the hard-label term has weight (labels are then required).
    pub fn uses_labels(&self) -> bool {
        self.alpha < 1.0
    }
}

/// Hinton KD loss over `batch x classes` row-major logits; writes `dL/d student` into `grad`
/// when given. `labels` (one class index per row) are required when `alpha < 1` and ignored
/// when `alpha == 1`. Returns the reduced loss.
pub fn kd_loss(
    student: &[f32],
    teacher: &[f32],
    labels: Option<&[i32]>,
    batch: usize,
    classes: usize,
    params: &KdParams,
    grad: Option<&mut [f32]>,
) -> Result<f32> {
    kd_loss_on(Isa::active(), student, teacher, labels, batch, classes, params, grad)
}

/// [`kd_loss`] on a chosen kernel path.
#[allow(clippy::too_many_arguments)]
pub fn kd_loss_on(
    isa: Isa,
    student: &[f32],
    teacher: &[f32],
    labels: Option<&[i32]>,
    batch: usize,
    classes: usize,
    params: &KdParams,
    grad: Option<&mut [f32]>,
) -> Result<f32> {
    kd_rows(isa, student, teacher, labels, None, [batch, 1, classes], params, grad)
}

/// Hinton KD loss over `batch x seq x classes` logits, one label per token (`batch x seq`),
/// and an optional token mask (`batch x seq`, nonzero keeps the token). Masked tokens add
/// nothing, get a zero gradient, and their labels are not read; [`Reduction::Mean`] divides
/// by the number of kept tokens (a batch with no kept token has loss 0 and gradient 0).
#[allow(clippy::too_many_arguments)]
pub fn kd_loss_seq(
    student: &[f32],
    teacher: &[f32],
    labels: Option<&[i32]>,
    mask: Option<&[u8]>,
    batch: usize,
    seq: usize,
    classes: usize,
    params: &KdParams,
    grad: Option<&mut [f32]>,
) -> Result<f32> {
    kd_loss_seq_on(Isa::active(), student, teacher, labels, mask, batch, seq, classes, params, grad)
}

/// [`kd_loss_seq`] on a chosen kernel path.
#[allow(clippy::too_many_arguments)]
pub fn kd_loss_seq_on(
    isa: Isa,
    student: &[f32],
    teacher: &[f32],
    labels: Option<&[i32]>,
    mask: Option<&[u8]>,
    batch: usize,
    seq: usize,
    classes: usize,
    params: &KdParams,
    grad: Option<&mut [f32]>,
) -> Result<f32> {
    kd_rows(isa, student, teacher, labels, mask, [batch, seq, classes], params, grad)
}

fn check_shape(context: &'static str, len: usize, dims: &[usize], n: usize) -> Result<()> {
    if len != n {
        return Err(Error::ShapeMismatch { context, expected: dims.to_vec(), actual: vec![len] });
    }
    Ok(())
}

/// Gradient size from which the KD pass writes it with non-temporal stores.
const STREAM_GRADIENT_BYTES: usize = 4 << 20;

/// The error naming the first non-finite logit of the kept rows, the student's before the teacher's.
fn first_non_finite(student: &[f32], teacher: &[f32], classes: usize, kept: impl Fn(usize) -> bool) -> Error {
    let first = |data: &[f32]| {
        data.chunks(classes.max(1))
            .enumerate()
            .filter(|&(r, _)| kept(r))
            .find_map(|(r, row)| row.iter().position(|v| !v.is_finite()).map(|k| (r * classes + k, row[k])))
    };
    let (name, (index, value)) = match first(student) {
        Some(found) => ("student", found),
        None => ("teacher", first(teacher).unwrap_or((0, f32::NAN))),
    };
    Error::NonFinite { name, index, value: f64::from(value) }
}

/// The fused KD pass over `rows = dims[0] * dims[1]` rows of `dims[2]` classes.
#[allow(clippy::too_many_arguments)]
fn kd_rows(
    isa: Isa,
    student: &[f32],
    teacher: &[f32],
    labels: Option<&[i32]>,
    mask: Option<&[u8]>,
    dims: [usize; 3],
    params: &KdParams,
    mut grad: Option<&mut [f32]>,
) -> Result<f32> {
    isa.ensure_available()?;
    params.validate()?;
    let rows = checked_product("kd rows", &dims[..2])?;
    let classes = dims[2];
    let n = checked_product("kd logits", &dims)?;
    check_shape("kd student logits", student.len(), &dims, n)?;
    check_shape("kd teacher logits", teacher.len(), &dims, n)?;
    if let Some(g) = grad.as_deref() {
        check_shape("kd gradient", g.len(), &dims, n)?;
    }
    if let Some(m) = mask {
        check_shape("kd token mask", m.len(), &dims[..2], rows)?;
    }
    let kept = |r: usize| mask.is_none_or(|m| m[r] != 0);
    let labels = if params.uses_labels() {
        let labels = labels.ok_or_else(|| Error::invalid("labels", "none", "required when alpha < 1"))?;
        check_shape("kd labels", labels.len(), &dims[..2], rows)?;
        if let Some(r) = (0..rows).find(|&r| kept(r) && !(0..classes as i64).contains(&i64::from(labels[r])))
        {
            return Err(Error::invalid(
                "labels",
                labels[r],
                format!("row {r}: not a class index below {classes}"),
            ));
        }
        Some(labels)
    } else {
        None
    };
    let kept_rows = (0..rows).filter(|&r| kept(r)).count();
    if kept_rows > 0 && classes == 0 {
        return Err(Error::invalid("classes", 0, "a softmax needs at least one class"));
    }

    // Pass 1, before anything is written: row maxima, and every logit finite. Last row first, so
    // that the first rows are still cached when pass 2 starts on them.
    let mut maxima = try_vec(rows, (0.0f32, 0.0f32))?;
    for (r, m) in maxima.iter_mut().enumerate().rev() {
        if !kept(r) {
            continue;
        }
        let row = r * classes..(r + 1) * classes;
        let ms = math::max_finite_on(isa, &student[row.clone()])?;
        let mt = math::max_finite_on(isa, &teacher[row])?;
        let (Some(ms), Some(mt)) = (ms, mt) else {
            return Err(first_non_finite(student, teacher, classes, kept));
        };
        *m = (ms, mt);
    }

    let temperature = f64::from(params.temperature);
    let inv_t = 1.0 / params.temperature;
    let alpha = f64::from(params.alpha);
    // With T = 1 the hard softmax is the soft one; with T = 2, 4 or 8 its numerators are the soft
    // ones squared: one exponential less per logit either way.
    let hard = HardExp::for_temperature(params.temperature, params.uses_labels());
    let divisor = params.reduction.divisor(kept_rows);
    let mut scratch = if grad.is_some() { try_vec(2 * classes, 0.0f32)? } else { Vec::new() };
    // A gradient larger than the caches goes straight to memory (not read first, and not evicting
    // the logit rows still to come).
    let stream = n.saturating_mul(4) >= STREAM_GRADIENT_BYTES;

    // Pass 2: per row, the fused sums (storing the exponentials), then the gradient.
    let mut total = 0.0f64;
    for (r, &(ms, mt)) in maxima.iter().enumerate() {
        let row = r * classes..(r + 1) * classes;
        let mut grad_row = grad.as_deref_mut().map(|g| &mut g[row.clone()]);
        if !kept(r) {
            if let Some(g) = grad_row {
                g.fill(0.0);
            }
            continue;
        }
        let (s, t) = (&student[row.clone()], &teacher[row]);
        let store = grad_row.as_deref_mut().map(|g| {
            let (es, et) = scratch.split_at_mut(classes);
            KdStore { student: es, teacher: et, hard: g }
        });
        let sums = math::kd_row_sums_on(isa, s, t, ms, mt, inv_t, hard, store)?;
        let kl = (sums.cross / sums.teacher + sums.student.ln() - sums.teacher.ln()).max(0.0);
        let mut loss = alpha * temperature * temperature * kl;
        let label = labels.map(|l| l[r] as usize);
        if let Some(y) = label {
            let ce = (sums.hard.ln() - f64::from(s[y] - ms)).max(0.0);
            loss += (1.0 - alpha) * ce;
        }
        total += loss;

        if let Some(g) = grad_row {
            let soft = alpha * temperature / divisor;
            let hard_weight = (1.0 - alpha) / divisor;
            let mut cs = soft / sums.student;
            let ct = -soft / sums.teacher;
            let ch = hard_weight / sums.hard;
            if hard == HardExp::Soft && label.is_some() {
                cs += ch;
            }
            let (es, et) = scratch.split_at(classes);
            math::kd_row_grad_on(isa, es, et, cs as f32, ct as f32, ch as f32, hard, g, stream)?;
            if let Some(y) = label {
                g[y] -= hard_weight as f32;
            }
        }
    }
    Ok((total / divisor) as f32)
}

/// Mean squared error between hidden states (FitNets hint loss): `sum (s - t)^2 / n` for
/// [`Reduction::Mean`] (over all elements), `sum (s - t)^2` for [`Reduction::Sum`]; `grad`
/// receives `dL/ds`.
pub fn mse_loss(
    student: &[f32],
    teacher: &[f32],
    reduction: Reduction,
    grad: Option<&mut [f32]>,
) -> Result<f32> {
    let n = student.len();
    check_shape("mse teacher", teacher.len(), &[n], n)?;
    if let Some(g) = grad.as_deref() {
        check_shape("mse gradient", g.len(), &[n], n)?;
    }
    check_finite("student", student)?;
    check_finite("teacher", teacher)?;
    let divisor = reduction.divisor(n);
    let total: f64 = student.iter().zip(teacher).map(|(&s, &t)| (f64::from(s) - f64::from(t)).powi(2)).sum();
    if let Some(g) = grad {
        let scale = (2.0 / divisor) as f32;
        for ((g, &s), &t) in g.iter_mut().zip(student).zip(teacher) {
            *g = scale * (s - t);
        }
    }
    Ok((total / divisor) as f32)
}

/// The `eps` of [`cosine_embedding_loss`] (as in PyTorch's `cosine_embedding_loss`).
pub const COSINE_EPS: f64 = 1e-12;

/// Cosine embedding loss with target 1 (DistilBERT's hidden-state alignment) over `batch x dim`
/// rows: per row `1 - s.t / sqrt((|s|^2 + eps)(|t|^2 + eps))`, [`COSINE_EPS`] for `eps`,
/// reduced over rows; `grad` receives `dL/ds`.
pub fn cosine_embedding_loss(
    student: &[f32],
    teacher: &[f32],
    batch: usize,
    dim: usize,
    reduction: Reduction,
    mut grad: Option<&mut [f32]>,
) -> Result<f32> {
    let n = checked_product("cosine inputs", &[batch, dim])?;
    check_shape("cosine student", student.len(), &[batch, dim], n)?;
    check_shape("cosine teacher", teacher.len(), &[batch, dim], n)?;
    if let Some(g) = grad.as_deref() {
        check_shape("cosine gradient", g.len(), &[batch, dim], n)?;
    }
    check_finite("student", student)?;
    check_finite("teacher", teacher)?;
    let divisor = reduction.divisor(batch);
    let mut total = 0.0f64;
    for r in 0..batch {
        let row = r * dim..(r + 1) * dim;
        let (s, t) = (&student[row.clone()], &teacher[row.clone()]);
        let (mut st, mut ss, mut tt) = (0.0f64, 0.0f64, 0.0f64);
        for (&a, &b) in s.iter().zip(t) {
            let (a, b) = (f64::from(a), f64::from(b));
            st += a * b;
            ss += a * a;
            tt += b * b;
        }
        let (ss, tt) = (ss + COSINE_EPS, tt + COSINE_EPS);
        let denom = (ss * tt).sqrt();
        let cos = st / denom;
        total += 1.0 - cos;
        if let Some(g) = grad.as_deref_mut() {
            // d(1 - cos)/ds = -(t / denom - cos s / (|s|^2 + eps)), over the divisor.
            for ((g, &a), &b) in g[row].iter_mut().zip(s).zip(t) {
                *g = ((cos * f64::from(a) / ss - f64::from(b) / denom) / divisor) as f32;
            }
        }
    }
    Ok((total / divisor) as f32)
}

/// The `eps` under the norm of an attention map (as in PyTorch's `F.normalize`).
pub const ATTENTION_EPS: f64 = 1e-12;

/// Attention transfer (Zagoruyko & Komodakis 2017): for each sample, the attention map
/// `q = a / max(|a|, eps)` with `a = mean over channels of x^2` (`spatial` positions), and the
/// loss `|q_s - q_t|^2`, reduced over the batch. Student activations are
/// `batch x student_channels x spatial`, teacher `batch x teacher_channels x spatial`;
/// `grad` receives `dL/d student activations`. (The authors' code also divides by `spatial`.)
#[allow(clippy::too_many_arguments)]
pub fn attention_transfer_loss(
    student: &[f32],
    teacher: &[f32],
    batch: usize,
    student_channels: usize,
    teacher_channels: usize,
    spatial: usize,
    reduction: Reduction,
    mut grad: Option<&mut [f32]>,
) -> Result<f32> {
    let s_dims = [batch, student_channels, spatial];
    let t_dims = [batch, teacher_channels, spatial];
    let ns = checked_product("attention student", &s_dims)?;
    let nt = checked_product("attention teacher", &t_dims)?;
    check_shape("attention student", student.len(), &s_dims, ns)?;
    check_shape("attention teacher", teacher.len(), &t_dims, nt)?;
    if let Some(g) = grad.as_deref() {
        check_shape("attention gradient", g.len(), &s_dims, ns)?;
    }
    if batch > 0 && spatial > 0 && (student_channels == 0 || teacher_channels == 0) {
        return Err(Error::invalid("channels", 0, "an attention map needs at least one channel"));
    }
    check_finite("student", student)?;
    check_finite("teacher", teacher)?;
    let divisor = reduction.divisor(batch);
    let mut qs = try_vec(spatial, 0.0f64)?;
    let mut qt = try_vec(spatial, 0.0f64)?;
    let mut total = 0.0f64;
    for b in 0..batch {
        let xs = &student[b * student_channels * spatial..(b + 1) * student_channels * spatial];
        let xt = &teacher[b * teacher_channels * spatial..(b + 1) * teacher_channels * spatial];
        let norm_s = attention_map(xs, student_channels, &mut qs);
        attention_map(xt, teacher_channels, &mut qt);
        total += qs.iter().zip(&qt).map(|(a, b)| (a - b).powi(2)).sum::<f64>();
        if let Some(g) = grad.as_deref_mut() {
            // dL/dq = 2 (qs - qt); through q = a / |a| (for |a| > eps): dL/da = (d - q (q.d)) / |a|;
            // da_j / dx_cj = 2 x_cj / C.
            let (norm, below_eps) = (norm_s.max(ATTENTION_EPS), norm_s <= ATTENTION_EPS);
            let dot: f64 =
                if below_eps { 0.0 } else { qs.iter().zip(&qt).map(|(q, t)| q * 2.0 * (q - t)).sum() };
            let g = &mut g[b * student_channels * spatial..(b + 1) * student_channels * spatial];
            let scale = 2.0 / (student_channels as f64 * divisor);
            for (gc, xc) in g.chunks_exact_mut(spatial).zip(xs.chunks_exact(spatial)) {
                for (j, (g, &x)) in gc.iter_mut().zip(xc).enumerate() {
                    let da = (2.0 * (qs[j] - qt[j]) - qs[j] * dot) / norm;
                    *g = (da * scale * f64::from(x)) as f32;
                }
            }
        }
    }
    Ok((total / divisor) as f32)
}

/// Writes the normalised attention map of one sample (`channels x spatial`) into `q`; returns
/// the norm of the unnormalised map.
fn attention_map(x: &[f32], channels: usize, q: &mut [f64]) -> f64 {
    q.fill(0.0);
    for xc in x.chunks_exact(q.len().max(1)) {
        for (a, &v) in q.iter_mut().zip(xc) {
            *a += f64::from(v) * f64::from(v);
        }
    }
    q.iter_mut().for_each(|a| *a /= channels as f64);
    let norm = q.iter().map(|a| a * a).sum::<f64>().sqrt();
    let denom = norm.max(ATTENTION_EPS);
    q.iter_mut().for_each(|a| *a /= denom);
    norm
}
