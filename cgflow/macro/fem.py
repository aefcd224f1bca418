"""Macroscopic P1 finite-element solver for a learned dissipative operator (seed 000, Algorithm 1, step 4).

The weak form of the gradient flow d rho/dt = -div(m grad F(rho)) on linear hat
functions gamma_a at the nodes x_a = a/N (spacing Delta = 1/N) is seed 000
eq. (4)/(8):

    M d rho/dt = K(rho) F(rho),      M_ab = <gamma_a, gamma_b>,

with the consistent mass matrix M (Delta * (1/6, 2/3, 1/6) on every row;
Algorithm 1 lines 21-24), the nodal thermodynamic force F_a = F(rho_a)
(line 30) and the tridiagonal operator K, which eq. (8) builds *column-wise*
from a local operator model (line 31): column a holds the stencil of the
operator frozen at node a's local affine state (rho_a, grad rho_a),

    K_{a-1,a}, K_{a,a}, K_{a+1,a} = stencil(rho_a, s_a)[offset -1, 0, +1].

A stencil model is any callable ``stencil(rho, slope) -> ndarray (n, 3)`` whose
rows are (K_{a,a-1}, K_aa, K_{a,a+1}) in the operator table's row convention (for
a symmetric operator frozen at node a, row a equals column a, so they are used as
the column entries). Row a must depend on (rho_a, s_a) only (the model is local;
the explicit step evaluates stacked states in one call). Mass conservation holds
exactly when every stencil row sums to zero (Appendix A: "the entries in each column sum up to 0"), because then the
columns of K sum to zero and d/dt (1^T M rho) = 1^T K F = 0.

The nodal gradient s_a is the central difference (rho_{a+1} - rho_{a-1})/(2 Delta)
(periodic wrap); at a Dirichlet end it is the one-sided difference over the only
element, so the affine state of an end node interpolates both nodal values of
that element.

Boundaries
----------
``'periodic'``: N nodes a = 0..N-1, x_a = a/N, node N identified with node 0.
``'dirichlet'``: N + 1 nodes a = 0..N with half hats at both ends; the end values
are held fixed and only the interior ("u") nodes evolve,
M_uu d rho_u/dt = K_uk F_k + K_uu F_u (Algorithm 1 lines 24, 35-40), where the
"k" columns are the two end nodes, so the end columns of K are assembled too.

Time stepping
-------------
``method='explicit'`` is forward Euler exactly as Algorithm 1 lines 29-43, with M
factorised once. For P1 diffusion with diffusivity D the consistent-mass limit
is dt <= Delta**2/(6 D_max) (lumped: Delta**2/(2 D_max); REFERENCE §1,
:func:`stable_time_step`). For the column-wise operator of eq. (8) the relevant
D_max is *not* the physical diffusivity D = -m F' (= m' for the zero-range
process): K depends on rho, and the term (dK/drho) F of the linearisation is of
the same order for grid-scale modes, so a flat zero-range state has the
effective diffusivity m' (1 - F), about 5.5 m' at rho = 9 with F = -log phi. The
default step therefore comes from a rigorous bound on the spectral radius of the
full Jacobian (:func:`estimate_max_diffusivity`), recomputed every step; with
Delta**2/(6 m'_max) the explicit scheme blows up. (A consequence of the same
term: the scheme is not invariant under F -> F + c, its O(Delta**2) error
constant depends on the gauge of F, and wherever F > 1 the checkerboard mode
grows for any step.)

``method='implicit'`` is the variable-order, variable-step BDF integrator of
scipy (``scipy.integrate.BDF``, the integrator behind
``solve_ivp(method='BDF')``), stepped directly so that steps can be counted and
guarded; see :func:`simulate` for the Jacobian.

Units: macroscopic time and space (x in [0, 1]), as in seed 000 §4.
"""

from __future__ import annotations

import functools
import math
import time
from dataclasses import dataclass, field
from numbers import Integral
from typing import Callable

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla
from scipy.integrate import BDF

__all__ = [
    "BOUNDARIES",
    "MacroResult",
    "apply_operator",
    "assemble_operator",
    "estimate_max_diffusivity",
    "mass_matrix",
    "node_positions",
    "nodal_slopes",
    "simulate",
    "stable_time_step",
]

BOUNDARIES = ("periodic", "dirichlet")

Stencil = Callable[[np.ndarray, np.ndarray], np.ndarray]
Force = Callable[[np.ndarray], np.ndarray]

#: Relative size below which entries of the dense implicit Jacobian M^-1 J_g are dropped.
_JAC_DROP = 1e-14
#: Largest node count for which J_g is assembled dense (cheaper per step); above it, sparse (O(n) memory).
_DENSE_JACOBIAN_MAX = 256


# ----------------------------------------------------------------------------- validation
def _check_elements(elements, boundary: str) -> int:
    if isinstance(elements, bool) or not isinstance(elements, Integral):
        raise ValueError(f"elements must be a positive integer, got {elements!r}")
    n = int(elements)
    least = 3 if boundary == "periodic" else 2
    if n < least:
        raise ValueError(f"{boundary} boundaries need at least {least} elements, got {n}")
    return n


def _check_boundary(boundary) -> str:
    if boundary not in BOUNDARIES:
        raise ValueError(f"boundary must be one of {BOUNDARIES}, got {boundary!r}")
    return boundary


def _num_nodes(elements: int, boundary: str) -> int:
    return elements if boundary == "periodic" else elements + 1


def _check_profile(rho, elements: int, boundary: str, name: str = "rho") -> np.ndarray:
    arr = np.asarray(rho, dtype=np.float64)
    n = _num_nodes(elements, boundary)
    if arr.shape != (n,):
        raise ValueError(
            f"{name} must have shape ({n},) for {elements} elements with {boundary} boundaries, got {arr.shape}"
        )
    return arr


def node_positions(elements: int, boundary: str) -> np.ndarray:
    """Node positions x_a = a/N (Algorithm 1 line 10): a = 0..N-1 periodic, 0..N Dirichlet."""
    boundary = _check_boundary(boundary)
    n_el = _check_elements(elements, boundary)
    return np.arange(_num_nodes(n_el, boundary), dtype=np.float64) / n_el


# ----------------------------------------------------------------------------- matrices
def mass_matrix(elements, boundary) -> sp.csr_matrix:
    """Consistent P1 mass matrix M_ab = <gamma_a, gamma_b> (Algorithm 1 lines 21-24).

    Parameters
    ----------
    elements : int
        Number of elements N; spacing Delta = 1/N.
    boundary : {'periodic', 'dirichlet'}
        ``'periodic'``: N x N circulant with rows Delta * (1/6, 2/3, 1/6), wrapping
        (line 22). ``'dirichlet'``: (N + 1) x (N + 1) matrix of the non-periodic
        hats (line 24); the end rows belong to half hats, diagonal Delta/3. The
        interior block M_uu = M[1:-1, 1:-1] is the one Algorithm 1 line 25 inverts.

    Returns
    -------
    scipy.sparse.csr_matrix
        Symmetric positive definite; 1^T M rho is the integral of the P1
        interpolant of rho.
    """
    boundary = _check_boundary(boundary)
    n_el = _check_elements(elements, boundary)
    delta = 1.0 / n_el
    n = _num_nodes(n_el, boundary)
    diag = np.full(n, 2.0 * delta / 3.0)
    off = np.full(n - 1, delta / 6.0)
    m = sp.diags([off, diag, off], [-1, 0, 1], shape=(n, n), format="lil")
    if boundary == "periodic":
        m[0, n - 1] = delta / 6.0
        m[n - 1, 0] = delta / 6.0
    else:
        m[0, 0] = delta / 3.0
        m[n - 1, n - 1] = delta / 3.0
    return m.tocsr()


def _min_mass_eigenvalue(elements: int, boundary: str) -> float:
    """Smallest eigenvalue of M (periodic) or of M_uu (Dirichlet), in closed form."""
    delta = 1.0 / elements
    if boundary == "periodic":
        theta = 2.0 * math.pi * (elements // 2) / elements  # Fourier modes exp(i k x_a)
    else:
        theta = math.pi * (elements - 1) / elements  # sine modes sin(j pi x_a), j = N - 1
    return delta * (2.0 + math.cos(theta)) / 3.0


def nodal_slopes(rho, elements, boundary) -> np.ndarray:
    """Nodal gradients s_a = grad rho|_a used to evaluate the stencils (Algorithm 1 line 31).

    Parameters
    ----------
    rho : array_like, shape (n,)
        Nodal densities (n = N periodic, N + 1 Dirichlet).
    elements : int
        Number of elements N; Delta = 1/N.
    boundary : {'periodic', 'dirichlet'}

    Returns
    -------
    ndarray, shape (n,)
        Central differences (rho_{a+1} - rho_{a-1})/(2 Delta) at interior nodes
        (wrapping for periodic); one-sided (rho_1 - rho_0)/Delta and
        (rho_N - rho_{N-1})/Delta at Dirichlet ends, so the affine state of an end
        node matches both nodal values of its element.
    """
    boundary = _check_boundary(boundary)
    n_el = _check_elements(elements, boundary)
    r = _check_profile(rho, n_el, boundary)
    s = np.empty_like(r)
    if boundary == "periodic":  # (rho_{a+1} - rho_{a-1}) N/2 with wrap-around (slices: cheaper than np.roll)
        s[1:-1] = r[2:] - r[:-2]
        s[0] = r[1] - r[-1]
        s[-1] = r[0] - r[-2]
        s *= 0.5 * n_el
        return s
    s[1:-1] = (r[2:] - r[:-2]) * (0.5 * n_el)
    s[0] = (r[1] - r[0]) * n_el
    s[-1] = (r[-1] - r[-2]) * n_el
    return s


def _check_stencils(stencils, n: int) -> np.ndarray:
    st = np.asarray(stencils, dtype=np.float64)
    if st.shape != (n, 3):
        raise ValueError(f"stencils must have shape ({n}, 3), got {st.shape}")
    return st


def assemble_operator(stencils, boundary) -> sp.csr_matrix:
    """Assemble the tridiagonal operator K column-wise (seed 000 eq. (8); Algorithm 1 line 31).

    Parameters
    ----------
    stencils : array_like, shape (n, 3)
        Row ``a`` = (K_{a,a-1}, K_aa, K_{a,a+1}) of the operator frozen at node a's
        local state (rho_a, s_a). They are placed in column a:
        K[a-1, a] = stencils[a, 0], K[a, a] = stencils[a, 1], K[a+1, a] = stencils[a, 2].
    boundary : {'periodic', 'dirichlet'}
        Periodic: n = N nodes, indices wrap. Dirichlet: n = N + 1 nodes; the end
        columns are assembled too (Algorithm 1 line 36 uses K_uk), and the
        entries that would fall outside the domain (K[-1, 0], K[N + 1, N]) are
        dropped. The end rows are assembled but unused (the end values are fixed).

    Returns
    -------
    scipy.sparse.csr_matrix, shape (n, n)
    """
    boundary = _check_boundary(boundary)
    st = np.asarray(stencils, dtype=np.float64)
    if st.ndim != 2 or st.shape[1] != 3:
        raise ValueError(f"stencils must have shape (n, 3), got {st.shape}")
    n = st.shape[0]
    _check_elements(n if boundary == "periodic" else n - 1, boundary)
    cols = np.repeat(np.arange(n), 3)
    rows = cols + np.tile(np.array([-1, 0, 1]), n)
    vals = st.ravel()
    if boundary == "periodic":
        rows %= n
    else:
        keep = (rows >= 0) & (rows < n)
        rows, cols, vals = rows[keep], cols[keep], vals[keep]
    return sp.coo_matrix((vals, (rows, cols)), shape=(n, n)).tocsr()


def apply_operator(stencils, force_values, boundary) -> np.ndarray:
    """K F without forming K: the right-hand side of eq. (8) (Algorithm 1 lines 33 and 39).

    Parameters
    ----------
    stencils : array_like, shape (n, 3)
        As for :func:`assemble_operator`.
    force_values : array_like, shape (n,)
        Nodal forces F_a (line 30).
    boundary : {'periodic', 'dirichlet'}

    Returns
    -------
    ndarray
        Periodic: (K F)_b = K_{b-1}[+1] F_{b-1} + K_b[0] F_b + K_{b+1}[-1] F_{b+1}
        for all n nodes. Dirichlet: the interior rows only, K_uk F_k + K_uu F_u
        (shape (n - 2,), line 39).
    """
    boundary = _check_boundary(boundary)
    f = np.asarray(force_values, dtype=np.float64)
    st = _check_stencils(stencils, f.shape[0])
    if boundary == "periodic":  # column b-1's lower entry + column b's diagonal + column b+1's upper entry
        below, above = st[:, 2] * f, st[:, 0] * f
        out = np.empty_like(f)
        out[1:] = below[:-1]
        out[0] = below[-1]
        out += st[:, 1] * f
        out[:-1] += above[1:]
        out[-1] += above[0]
        return out
    return st[:-2, 2] * f[:-2] + st[1:-1, 1] * f[1:-1] + st[2:, 0] * f[2:]


# ----------------------------------------------------------------------------- stability
def stable_time_step(diffusivity_max, elements, mass="consistent") -> float:
    """Largest stable forward-Euler step for P1 diffusion (REFERENCE §1, "Macroscopic FEM").

    For d rho/dt = D rho_xx the largest eigenvalue of M^-1 K is 12 D/Delta**2 with
    the consistent mass (Fourier mode k Delta = pi:
    (2/Delta**2)(1 - cos k Delta)/((2 + cos k Delta)/3) D) and 4 D/Delta**2 with the
    lumped mass; Euler needs dt * lambda_max <= 2.

    Parameters
    ----------
    diffusivity_max : float
        Largest diffusivity, > 0. For the constant-coefficient P1 heat equation it
        is D; for the column-wise operator of eq. (8) use the effective value of
        :func:`estimate_max_diffusivity` (larger than the physical D = -m F').
    elements : int
        Number of elements N; Delta = 1/N.
    mass : {'consistent', 'lumped'}

    Returns
    -------
    float
        Delta**2/(6 D_max) (consistent) or Delta**2/(2 D_max) (lumped).
    """
    d = float(diffusivity_max)
    if not math.isfinite(d) or d <= 0:
        raise ValueError(f"diffusivity_max must be finite and > 0, got {diffusivity_max!r}")
    if isinstance(elements, bool) or not isinstance(elements, Integral) or elements < 1:
        raise ValueError(f"elements must be a positive integer, got {elements!r}")
    delta = 1.0 / int(elements)
    if mass == "consistent":
        return delta * delta / (6.0 * d)
    if mass == "lumped":
        return delta * delta / (2.0 * d)
    raise ValueError(f"mass must be 'consistent' or 'lumped', got {mass!r}")


def _steps(rho: np.ndarray, slope: np.ndarray, elements: int) -> tuple[np.ndarray, np.ndarray]:
    """Forward-difference steps for rho and for the slope (whose natural scale is rho/Delta)."""
    scale = max(float(np.max(np.abs(rho))), 1e-300)
    h_rho = 1e-7 * np.maximum(np.abs(rho), 1e-3 * scale)
    h_slope = 1e-7 * np.abs(slope) + 1e-8 * elements * scale
    return h_rho, h_slope


def _jacobian_g(rho, slope, st, f, stencil: Stencil, force: Force, elements: int, boundary: str):
    """Jacobian of g(rho) = K(rho) F(rho) over all nodes, pentadiagonal (periodic: wrapped).

    A dense ndarray for n <= 256 nodes, else a scipy.sparse CSR matrix: the
    callers need only its absolute row and column sums (:func:`_spectral_bound`)
    or M^-1 J_g (dense anyway), and for a small macro grid building a sparse
    matrix every explicit step cost more than the rest of the step.

    g = sum_a c_a(rho_a, s_a) F(rho_a), where c_a is column a of K (the stencil
    of node a at rows a-1, a, a+1) and s_a depends on rho_{a-1}, rho_{a+1}, so

        dg/drho_c = c_c F'_c + (dc_c/drho) F_c + sum_a (dc_a/ds) F_a ds_a/drho_c.

    The derivatives of the stencil and of the force are forward differences
    (two extra stencil calls and one force call, with the steps of
    :func:`_steps`); the rest is exact (:func:`_assemble_jacobian`).
    """
    h_rho, h_slope = _steps(rho, slope, elements)
    fprime = (_eval_force(force, rho + h_rho, math.nan, -1) - f) / h_rho
    d_rho = (_eval_stencil(stencil, rho + h_rho, slope, math.nan, -1) - st) / h_rho[:, None]
    d_slope = (_eval_stencil(stencil, rho, slope + h_slope, math.nan, -1) - st) / h_slope[:, None]
    return _assemble_jacobian(st, f, fprime, d_rho, d_slope, elements, boundary)


@functools.lru_cache(maxsize=32)
def _jacobian_pattern(n: int, elements: int, boundary: str):
    """Index pattern of :func:`_assemble_jacobian` (cached per grid): slope sources, coefficients, flat indices.

    ``src``/``coef``: node a whose slope s_a moves when rho_c (c = ``dst``) moves, and
    ds_a/drho_c. ``flat``: row * n + col of every (direct, via-slope) entry, in
    that order, ``keep`` the entries inside the matrix (Dirichlet ends).
    """
    nodes = np.arange(n)
    half = 0.5 * elements
    if boundary == "periodic":
        src = np.concatenate([nodes, nodes])  # node a whose slope moves ...
        dst = np.concatenate([(nodes + 1) % n, (nodes - 1) % n])  # ... when rho_c moves
        coef = np.concatenate([np.full(n, half), np.full(n, -half)])
    else:
        inner = nodes[1:-1]
        src = np.concatenate([inner, inner, [0, 0, n - 1, n - 1]])
        dst = np.concatenate([inner + 1, inner - 1, [1, 0, n - 1, n - 2]])
        coef = np.concatenate([np.full(n - 2, half), np.full(n - 2, -half), [elements, -elements, elements, -elements]])
    off = np.array([-1, 0, 1])
    rows = np.concatenate([(nodes[:, None] + off).ravel(), (src[:, None] + off).ravel()])
    cols = np.concatenate([np.repeat(nodes, 3), np.repeat(dst, 3)])
    if boundary == "periodic":
        rows %= n
        keep = np.ones(rows.size, dtype=bool)
    else:
        keep = (rows >= 0) & (rows < n)
    flat = (rows * n + cols)[keep]
    for arr in (src, coef, keep, flat):
        arr.flags.writeable = False
    return src, coef, keep, flat


def _assemble_jacobian(st, f, fprime, d_rho, d_slope, elements: int, boundary: str) -> np.ndarray:
    """Dense J_g from the stencils, the forces and their derivatives (see :func:`_jacobian_g`)."""
    n = f.size
    src, coef, keep, flat = _jacobian_pattern(n, int(elements), boundary)
    direct = st * fprime[:, None] + d_rho * f[:, None]  # column a, rows a-1..a+1
    via_slope = d_slope[src] * (f[src] * coef)[:, None]  # column dst, rows src-1..src+1
    vals = np.concatenate([direct.ravel(), via_slope.ravel()])[keep]
    # duplicates (periodic wrap, both slope neighbours) are summed, in the order of ``vals``
    if n <= _DENSE_JACOBIAN_MAX:
        jac = np.bincount(flat, weights=vals, minlength=n * n).reshape(n, n)
        finite = np.all(np.isfinite(jac))
    else:
        jac = sp.coo_matrix((vals, divmod(flat, n)), shape=(n, n)).tocsr()
        finite = np.all(np.isfinite(jac.data))
    if not finite:
        raise ValueError("Jacobian of K(rho) F(rho) is not finite: the profile is at the edge of the model's domain")
    return jac


def _evolving_block(jac, boundary: str):
    return jac if boundary == "periodic" else jac[1:-1, 1:-1]


def _spectral_bound(jac_u, elements: int, boundary: str) -> float:
    """Rigorous bound on the spectral radius of M^-1 J (J = dg/drho on the evolving nodes).

    M^-1 J is similar to M^-1/2 J M^-1/2, so |lambda| <= ||J||_2 / lambda_min(M)
    and ||J||_2 <= sqrt(||J||_1 ||J||_inf): two O(n) sums. For constant
    coefficients (stencil m/Delta (-1, 2, -1), periodic, even N) this is attained,
    12 D/Delta**2, and for the zero-range operator at a flat state it is attained
    too (12 (m' - m' F)/Delta**2, see :func:`estimate_max_diffusivity`).
    """
    a = abs(jac_u)  # ndarray or sparse
    norm1 = float(np.max(a.sum(axis=0)))
    norm_inf = float(np.max(a.sum(axis=1)))
    return math.sqrt(norm1 * norm_inf) / _min_mass_eigenvalue(elements, boundary)


def estimate_max_diffusivity(rho, stencil: Stencil, force: Force, *, elements, boundary) -> float:
    """Effective largest diffusivity of the linearised discrete operator, for :func:`stable_time_step`.

    The explicit step is limited by the spectral radius Lambda of the Jacobian
    M^-1 dg/drho of the semi-discrete system M d rho/dt = g(rho) = K(rho) F(rho)
    (Algorithm 1 lines 31-39). It is bounded rigorously by
    sqrt(||J||_1 ||J||_inf)/lambda_min(M), J = dg/drho on the evolving nodes
    (pentadiagonal, from :func:`_jacobian_g`), and converted to the diffusivity
    with the same consistent-mass limit, D_eff = Lambda Delta**2/12, so that
    ``stable_time_step(D_eff, N) = 2/Lambda``.

    The full Jacobian matters. Besides K diag(F') (diffusivity D = -m F'), the
    column-wise operator of eq. (8) has the term (dK/drho) F, which is of the
    same order for grid-scale modes: a checkerboard perturbation leaves the
    nodal slopes unchanged, so the gradient part of the stencils cannot cancel
    the change of the row sums of K, and at a flat state its decay rate is
    12 (m' - m' F)/Delta**2 when D = m' (the zero-range process). With
    F = -log phi (F ~ -4 at rho = 7) that is ~5x the rate 12 m'/Delta**2 of the
    diffusivity alone, so Delta**2/(6 m') (REFERENCE §1) is not a stable step for
    this scheme; and where F > 1 the checkerboard grows for any step.

    Parameters
    ----------
    rho : array_like, shape (n,)
        Current nodal densities.
    stencil, force : callable
        The operator model and the nodal force, as for :func:`simulate`.
    elements : int
    boundary : {'periodic', 'dirichlet'}

    Returns
    -------
    float
        D_eff >= 0.
    """
    boundary = _check_boundary(boundary)
    n_el = _check_elements(elements, boundary)
    r = _check_profile(rho, n_el, boundary)
    slope = nodal_slopes(r, n_el, boundary)
    st = _eval_stencil(stencil, r, slope, 0.0, 0)
    f = _eval_force(force, r, 0.0, 0)
    jac = _evolving_block(_jacobian_g(r, slope, st, f, stencil, force, n_el, boundary), boundary)
    return _spectral_bound(jac, n_el, boundary) / (12.0 * n_el * n_el)


# ----------------------------------------------------------------------------- guards
def _where(t: float, step: int) -> str:
    if not math.isfinite(t):
        return "(Jacobian evaluation)"
    return f"at t = {t:.6g}" + (f" (step {step})" if step >= 0 else " (implicit stage)")


def _check_state(rho: np.ndarray, require_positive: bool, t: float, step: int, x: np.ndarray) -> None:
    bad = ~np.isfinite(rho)
    if bad.any():
        i = int(np.argmax(bad))
        raise ValueError(
            f"non-finite density {rho[i]!r} at node {i} (x = {x[i]:.4g}) {_where(t, step)}; "
            "the scheme is unstable or the model left its domain"
        )
    if require_positive and np.any(rho <= 0):
        i = int(np.argmin(rho))
        raise ValueError(
            f"density left the model's domain rho > 0: rho = {rho[i]:.6g} at node {i} (x = {x[i]:.4g}) "
            f"{_where(t, step)}; the time step is too large or the profile is outside the model's range"
        )


def _eval_force(force: Force, rho: np.ndarray, t: float, step: int, nodes: int | None = None) -> np.ndarray:
    """force(rho) with the domain guards; ``nodes``: rho stacks copies of n = ``nodes`` nodes (reported modulo n)."""
    n = nodes or rho.shape[0]
    try:
        f = np.asarray(force(rho), dtype=np.float64)
    except (ValueError, FloatingPointError, ArithmeticError) as exc:
        i = int(np.argmin(rho))
        raise ValueError(
            f"force F(rho) failed {_where(t, step)} (min rho = {rho[i]:.6g} at node {i % n}, "
            f"max rho = {np.max(rho):.6g}): {exc}"
        ) from exc
    if f.shape != rho.shape:
        raise ValueError(f"force must return shape {rho.shape}, got {f.shape}")
    bad = ~np.isfinite(f)
    if bad.any():
        i = int(np.argmax(bad))
        raise ValueError(
            f"force F(rho) is not finite (F = {f[i]!r} at node {i % n}, rho = {rho[i]:.6g}) {_where(t, step)}: "
            "the density left the model's domain"
        )
    return f


def _eval_stencil(stencil: Stencil, rho: np.ndarray, slope: np.ndarray, t: float, step: int,
                  nodes: int | None = None) -> np.ndarray:  # fmt: skip
    """stencil(rho, slope) with the guards; ``nodes``: stacked copies of n = ``nodes`` nodes (reported modulo n)."""
    n = nodes or rho.shape[0]
    try:
        st = np.asarray(stencil(rho, slope), dtype=np.float64)
    except (ValueError, FloatingPointError, ArithmeticError) as exc:
        raise ValueError(
            f"stencil model failed {_where(t, step)} (rho in [{np.min(rho):.6g}, {np.max(rho):.6g}], "
            f"slope in [{np.min(slope):.6g}, {np.max(slope):.6g}]): {exc}"
        ) from exc
    st = _check_stencils(st, rho.shape[0])
    bad = ~np.isfinite(st).all(axis=1)
    if bad.any():
        i = int(np.argmax(bad))
        raise ValueError(
            f"stencil is not finite at node {i % n} (rho = {rho[i]:.6g}, slope = {slope[i]:.6g}) {_where(t, step)}: "
            "the local state left the model's domain"
        )
    return st


# ----------------------------------------------------------------------------- result
@dataclass
class MacroResult:
    """Nodal density history of a macroscopic run.

    Attributes
    ----------
    times : ndarray, shape (T,)
        The requested save times (hit exactly).
    x : ndarray, shape (n,)
        Node positions a/N.
    rho : ndarray, shape (T, n)
        Nodal densities at ``times``.
    dt : float
        Largest time step taken (explicit: the fixed or stability-limited Euler
        step, shortened steps that land on a save time excluded unless no other
        step was taken; implicit: largest accepted BDF step).
    steps : int
        Number of time steps (explicit: Euler updates; implicit: accepted BDF steps).
    method : str
        ``'explicit'`` or ``'implicit'``.
    wall_seconds : float
        Wall-clock time of the integration.
    boundary : str
        ``'periodic'`` or ``'dirichlet'``.
    dt_min : float
        Smallest non-landing step (equal to ``dt`` for a fixed explicit step).
    info : dict
        Explicit: ``d_eff_max`` (largest effective diffusivity behind the step)
        and, for a fixed ``dt``, ``stability_limit``; implicit: the BDF counters
        ``nfev``, ``njev``, ``nlu``.
    """

    times: np.ndarray
    x: np.ndarray
    rho: np.ndarray
    dt: float
    steps: int
    method: str
    wall_seconds: float
    boundary: str = "periodic"
    dt_min: float = float("nan")
    info: dict = field(default_factory=dict)

    def mass(self) -> np.ndarray:
        """Integral of the P1 interpolant, 1^T M rho, at every save time (shape (T,))."""
        n_el = self.x.size if self.boundary == "periodic" else self.x.size - 1
        m = mass_matrix(n_el, self.boundary)
        return np.asarray(m @ self.rho.T).sum(axis=0)


# ----------------------------------------------------------------------------- simulate
def _check_times(t_end, save_times) -> tuple[float, np.ndarray]:
    t_end = float(t_end)
    if not math.isfinite(t_end) or t_end < 0:
        raise ValueError(f"t_end must be finite and >= 0, got {t_end!r}")
    if save_times is None:
        save = np.array([0.0, t_end]) if t_end > 0 else np.array([0.0])
    else:
        save = np.atleast_1d(np.asarray(save_times, dtype=np.float64))
        if save.ndim != 1 or save.size == 0:
            raise ValueError("save_times must be a non-empty 1-D sequence")
        if not np.all(np.isfinite(save)) or np.any(save < 0) or np.any(save > t_end):
            raise ValueError(f"save_times must lie in [0, t_end = {t_end}], got {save}")
        if np.any(np.diff(save) < 0):
            raise ValueError("save_times must be non-decreasing")
    return t_end, save


def simulate(
    rho0,
    stencil: Stencil,
    force: Force,
    t_end,
    *,
    elements,
    boundary,
    save_times=None,
    method="explicit",
    dt=None,
    safety=0.9,
    diffusivity=None,
    progress=False,
    allow_unstable=False,
    require_positive=True,
    rtol=1e-8,
    atol=None,
) -> MacroResult:
    """Evolve M d rho/dt = K(rho) F(rho) (seed 000 eq. (8); Algorithm 1 lines 21-43).

    Parameters
    ----------
    rho0 : array_like, shape (n,)
        Initial nodal densities (n = N periodic, N + 1 Dirichlet; for Dirichlet the
        end values are the boundary data and stay fixed, lines 40-41).
    stencil : callable
        ``stencil(rho, slope) -> ndarray (n, 3)``, the local operator model
        (K_{a,a-1}, K_aa, K_{a,a+1}) at every node's state (rho_a, s_a), placed
        column-wise (:func:`assemble_operator`; line 31). It must be local (row a
        a function of (rho_a, s_a) alone, for arrays of any length): the adaptive
        explicit step evaluates it once per step on 3n stacked states (the state
        and its two finite-difference perturbations).
    force : callable
        ``force(rho) -> ndarray (n,)``, the nodal thermodynamic force F(rho_a)
        (line 30), e.g. -log phi(rho) for the zero-range process; local too
        (called on 2n stacked densities by the adaptive explicit step).
    t_end : float
        Final time; the run always integrates to ``t_end``.
    elements : int
        Number of elements N (Delta = 1/N).
    boundary : {'periodic', 'dirichlet'}
    save_times : array_like, optional
        Non-decreasing times in [0, t_end] at which the state is returned, hit
        exactly (explicit: the step before a save time is shortened; implicit:
        the BDF dense output). Default (0, t_end).
    method : {'explicit', 'implicit'}
        ``'explicit'``: forward Euler, Algorithm 1 lines 29-43 (periodic:
        rho += dt M^-1 K F, line 33; Dirichlet: rho_u += dt M_uu^-1 (K_uk F_k +
        K_uu F_u), line 39, end values fixed). ``'implicit'``: scipy's BDF
        (orders 1-5, the integrator of ``solve_ivp(method='BDF')``) on
        d rho/dt = M^-1 g(rho), g = K F (interior rows for Dirichlet), for long
        horizons. The Jacobian is not tridiagonal: g is pentadiagonal (column a
        of K depends on rho_{a-1..a+1} through s_a) and M^-1 is dense. J_g is
        computed by finite differences on its (periodic-wrapped) pentadiagonal
        sparsity pattern with column colouring (at most 9 evaluations of g), then
        J = M^-1 J_g is formed with one factorised solve and stored sparse after
        dropping entries below 1e-14 of its largest (M^-1 decays like
        (2 - sqrt 3)**|i - j|, so J is numerically banded); BDF factorises
        I - c J with splu.
    dt : float, optional
        Explicit: a fixed step; if above the stability limit of the initial
        profile it raises unless ``allow_unstable``. Default: adaptive,
        ``safety * stable_time_step(D_eff)`` recomputed every step from the
        current profile, where D_eff is :func:`estimate_max_diffusivity` (a
        rigorous norm bound on the spectral radius of the full linearised
        operator M^-1 d(K F)/d rho, including the (dK/drho) F term that the
        physical diffusivity misses). Implicit: the largest step BDF may take
        (default: none).
    safety : float
        Fraction of the stability limit used by the default explicit step, in (0, 1].
    diffusivity : callable, optional
        ``D(rho) -> ndarray``, a known diffusivity (e.g. m'(rho) for the
        zero-range process). It can only shorten the explicit step, to
        Delta**2/(6 max D(rho)); it does not replace the Jacobian bound, which
        for the column-wise operator of eq. (8) is the binding one (see the
        module docstring).
    progress : bool
        Show a tqdm progress bar over time.
    allow_unstable : bool
        Accept a user ``dt`` above the stability limit (the guards still stop a
        blow-up with a ValueError).
    require_positive : bool
        Treat rho <= 0 as outside the model's domain (densities).
    rtol, atol : float
        BDF tolerances (implicit only); ``atol`` defaults to 1e-10 max|rho0|.

    Returns
    -------
    MacroResult

    Raises
    ------
    ValueError
        Bad arguments; a user ``dt`` above the stability limit (without
        ``allow_unstable``); or, with the offending value, node and time, when
        the density becomes non-finite or non-positive, or the force or stencil
        is not finite (the state left the model's domain). NaN is never returned.
    """
    boundary = _check_boundary(boundary)
    n_el = _check_elements(elements, boundary)
    rho = _check_profile(rho0, n_el, boundary, "rho0").copy()
    t_end, save = _check_times(t_end, save_times)
    if method not in ("explicit", "implicit"):
        raise ValueError(f"method must be 'explicit' or 'implicit', got {method!r}")
    safety = float(safety)
    if not (0 < safety <= 1):
        raise ValueError(f"safety must be in (0, 1], got {safety!r}")
    if dt is not None:
        dt = float(dt)
        if not math.isfinite(dt) or dt <= 0:
            raise ValueError(f"dt must be finite and > 0, got {dt!r}")
    x = node_positions(n_el, boundary)
    _check_state(rho, require_positive, 0.0, 0, x)
    _eval_force(force, rho, 0.0, 0)

    m = mass_matrix(n_el, boundary)
    m_solve = m if boundary == "periodic" else m[1:-1, 1:-1]
    lu = spla.splu(sp.csc_matrix(m_solve))

    runner = _run_explicit if method == "explicit" else _run_implicit
    start = time.perf_counter()
    out, steps, dt_max, dt_min, info = runner(
        rho, stencil, force, t_end, save, n_el, boundary, x, lu,
        dt=dt, safety=safety, diffusivity=diffusivity, progress=progress,
        allow_unstable=allow_unstable, require_positive=require_positive, rtol=rtol, atol=atol,
    )  # fmt: skip
    wall = time.perf_counter() - start
    return MacroResult(
        times=save.copy(),
        x=x,
        rho=out,
        dt=dt_max,
        steps=steps,
        method=method,
        wall_seconds=wall,
        boundary=boundary,
        dt_min=dt_min,
        info=info,
    )


def _rhs(rho, stencil, force, n_el, boundary, t, step):
    """g = K F (all rows periodic; interior rows Dirichlet) with the domain guards; also F, slopes, stencils."""
    f = _eval_force(force, rho, t, step)  # Algorithm 1 line 30
    slope = nodal_slopes(rho, n_el, boundary)
    st = _eval_stencil(stencil, rho, slope, t, step)  # line 31
    return apply_operator(st, f, boundary), f, slope, st


def _rhs_and_jacobian(rho, stencil, force, n_el, boundary, t, step):
    """:func:`_rhs` and the dense J_g of :func:`_jacobian_g` from one stencil call and one force call.

    The stencil model is local (row a depends only on (rho_a, s_a)), so the three
    states of :func:`_jacobian_g` (rho, s), (rho + h_rho, s), (rho, s + h_slope)
    are evaluated as one stacked array of 3n nodes, and the force at rho and
    rho + h_rho as one of 2n: the same numbers with a third of the calls (the
    explicit step's cost is mostly per call, not per node).
    """
    n = rho.size
    slope = nodal_slopes(rho, n_el, boundary)
    h_rho, h_slope = _steps(rho, slope, n_el)
    rho_up = rho + h_rho
    both = _eval_force(force, np.concatenate([rho, rho_up]), t, step, nodes=n)  # Algorithm 1 line 30
    f = both[:n]
    all_st = _eval_stencil(
        stencil, np.concatenate([rho, rho_up, rho]), np.concatenate([slope, slope, slope + h_slope]), t, step, nodes=n
    )  # line 31
    st = all_st[:n]
    fprime = (both[n:] - f) / h_rho
    d_rho = (all_st[n : 2 * n] - st) / h_rho[:, None]
    d_slope = (all_st[2 * n :] - st) / h_slope[:, None]
    jac = _assemble_jacobian(st, f, fprime, d_rho, d_slope, n_el, boundary)
    return apply_operator(st, f, boundary), f, slope, st, jac


def _stable_step(rho, slope, st, f, stencil, force, diffusivity, n_el, boundary, jac=None) -> tuple[float, float]:
    """Explicit stability limit at the current profile and the effective D_max behind it.

    2/Lambda from the Jacobian bound (:func:`estimate_max_diffusivity`); a
    ``diffusivity`` function adds the cap Delta**2/(6 max D(rho)). ``jac``: J_g
    if already computed (:func:`_rhs_and_jacobian`).
    """
    if jac is None:
        jac = _jacobian_g(rho, slope, st, f, stencil, force, n_el, boundary)
    jac = _evolving_block(jac, boundary)
    d_eff = _spectral_bound(jac, n_el, boundary) / (12.0 * n_el * n_el)
    if diffusivity is not None:
        d = np.asarray(diffusivity(rho), dtype=np.float64)
        if d.shape != rho.shape or not np.all(np.isfinite(d)):
            raise ValueError(f"diffusivity(rho) must be finite with shape {rho.shape}")
        d_eff = max(d_eff, float(np.max(d)))
    return (stable_time_step(d_eff, n_el) if d_eff > 0 else math.inf), d_eff


def _progress_bar(progress: bool, t_end: float):
    if not progress:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=t_end, unit="t", desc="macro FEM")


def _run_explicit(rho, stencil, force, t_end, save, n_el, boundary, x, lu, *, dt, safety, diffusivity,
                  progress, allow_unstable, require_positive, **_):  # fmt: skip
    """Forward Euler, Algorithm 1 lines 29-43."""
    periodic = boundary == "periodic"
    out = np.empty((save.size, rho.size))
    targets = np.unique(np.append(save, t_end))
    t, steps = 0.0, 0
    dt_max, dt_min = 0.0, math.inf
    last_landing = 0.0
    info: dict = {}
    bar = _progress_bar(progress, t_end)
    k_save = 0
    while k_save < save.size and save[k_save] <= 0.0:
        out[k_save] = rho
        k_save += 1
    try:
        for target in targets:
            while t < target:
                if dt is None:  # lines 30-31 and the Jacobian behind the stability bound
                    g, f, slope, st, jac = _rhs_and_jacobian(rho, stencil, force, n_el, boundary, t, steps)
                    bound, d_eff = _stable_step(rho, slope, st, f, stencil, force, diffusivity, n_el, boundary, jac)
                    h = safety * bound
                    info["d_eff_max"] = max(info.get("d_eff_max", 0.0), d_eff)
                else:
                    g, f, slope, st = _rhs(rho, stencil, force, n_el, boundary, t, steps)  # lines 30-31
                    if not info:  # checked once, on the initial profile
                        bound, d_eff = _stable_step(rho, slope, st, f, stencil, force, diffusivity, n_el, boundary)
                        info.update(stability_limit=bound, d_eff_max=d_eff)
                        if dt > bound * (1 + 1e-12) and not allow_unstable:
                            raise ValueError(
                                f"dt = {dt:.6g} exceeds the explicit stability limit {bound:.6g} of the initial "
                                f"profile (Delta**2/(6 D_eff), D_eff = {d_eff:.6g}); pass allow_unstable=True "
                                "to run anyway, or use method='implicit'"
                            )
                    h = dt
                landing = t + h * (1 + 1e-9) >= target
                if landing:
                    h = target - t
                else:
                    dt_max, dt_min = max(dt_max, h), min(dt_min, h)
                last_landing = h
                du = lu.solve(g)
                if periodic:
                    rho = rho + h * du  # line 33
                else:
                    rho = rho.copy()
                    rho[1:-1] += h * du  # line 39; the end values stay fixed, lines 40-41
                steps += 1
                t_new = target if landing else t + h  # lines 42-43
                if bar is not None:
                    bar.update(t_new - t)
                t = t_new
                _check_state(rho, require_positive, t, steps, x)
            while k_save < save.size and save[k_save] <= t:
                out[k_save] = rho
                k_save += 1
    finally:
        if bar is not None:
            bar.close()
    if dt_max == 0.0:  # only landing steps
        dt_max = dt_min = last_landing
    return out, steps, dt_max, dt_min, info


def _run_implicit(rho, stencil, force, t_end, save, n_el, boundary, x, lu, *, dt, progress,
                  require_positive, rtol, atol, **_):  # fmt: skip
    """BDF (scipy.integrate.BDF) on the evolving nodes, with a numerically banded sparse Jacobian."""
    periodic = boundary == "periodic"
    ends = None if periodic else (rho[0], rho[-1])
    n_u = rho.size if periodic else rho.size - 2
    violation: dict = {}

    def expand(y):
        if periodic:
            return np.array(y, dtype=np.float64)
        full = rho.copy()
        full[1:-1] = y
        return full

    def fun(t, y):
        if not np.all(np.isfinite(y)) or (require_positive and np.any(y <= 0)):
            i = int(np.argmin(np.where(np.isfinite(y), y, -np.inf)))
            violation.update(t=t, node=i if periodic else i + 1, value=float(y[i]))
            return np.full(n_u, np.nan)  # BDF rejects the Newton iterate and shortens the step
        try:
            g = _rhs(expand(y), stencil, force, n_el, boundary, t, -1)[0]
        except ValueError as exc:
            violation.update(t=t, message=str(exc))
            return np.full(n_u, np.nan)
        return lu.solve(g)

    def jac(t, y):
        r = expand(y)
        _, f, slope, st = _rhs(r, stencil, force, n_el, boundary, t, -1)
        jg = _evolving_block(_jacobian_g(r, slope, st, f, stencil, force, n_el, boundary), boundary)
        j = lu.solve(jg.toarray() if sp.issparse(jg) else jg)  # M^-1 J_g: dense, decays like (2 - sqrt 3)**|i - j|
        j[np.abs(j) < _JAC_DROP * np.max(np.abs(j))] = 0.0
        return sp.csc_matrix(j)

    y0 = rho.copy() if periodic else rho[1:-1].copy()
    if atol is None:
        atol = 1e-10 * float(np.max(np.abs(rho)))
    out = np.empty((save.size, rho.size))
    k_save = 0
    while k_save < save.size and save[k_save] <= 0.0:
        out[k_save] = rho
        k_save += 1
    steps, dt_max, dt_min = 0, 0.0, math.inf
    info: dict = {}
    if t_end > 0:
        kwargs = {} if dt is None else {"max_step": dt}
        solver = BDF(fun, 0.0, y0, t_end, rtol=rtol, atol=atol, jac=jac, **kwargs)
        bar = _progress_bar(progress, t_end)
        try:
            while solver.status == "running":
                t_old = solver.t
                msg = solver.step()
                if solver.status == "failed":
                    detail = ""
                    if violation:
                        detail = "; last state outside the model's domain: " + ", ".join(
                            f"{k} = {v}" for k, v in violation.items()
                        )
                    raise ValueError(f"implicit BDF integration failed at t = {solver.t:.6g}: {msg}{detail}")
                steps += 1
                hstep = solver.t - t_old
                dt_max, dt_min = max(dt_max, hstep), min(dt_min, hstep)
                if bar is not None:
                    bar.update(hstep)
                _check_state(expand(solver.y), require_positive, solver.t, steps, x)
                if k_save < save.size and save[k_save] <= solver.t:
                    interp = solver.dense_output()
                    while k_save < save.size and save[k_save] <= solver.t:
                        ts = save[k_save]
                        y = solver.y if ts == solver.t else interp(ts)
                        state = expand(y)
                        _check_state(state, require_positive, ts, steps, x)
                        out[k_save] = state
                        k_save += 1
        finally:
            if bar is not None:
                bar.close()
        info = {"nfev": solver.nfev, "njev": solver.njev, "nlu": solver.nlu}
    if ends is not None:
        out[:, 0], out[:, -1] = ends
    if dt_max == 0.0:
        dt_min = 0.0
    return out, steps, dt_max, dt_min, info
