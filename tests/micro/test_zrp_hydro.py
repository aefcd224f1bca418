"""Tests of cgflow.micro.zrp_hydro: transport coefficients, continuum and lattice operators."""

from __future__ import annotations

import numpy as np
import pytest

from cgflow.micro import zrp, zrp_hydro as hy

P_ALL = (0, 1, 2)

#: REFERENCE §1 table (p = 2): rho -> (m, D = m').
REF_TABLE = {
    4: (9.067056, 4.248633),
    5: (13.816011, 5.249200),
    6: (19.565361, 6.249472),
    7: (26.314916, 7.249624),
    8: (34.064591, 8.249719),
    9: (42.814343, 9.249782),
    10: (52.564148, 10.249826),
}

#: REFERENCE §1 row stencils for Delta = 1/40 (p = 2): (rho_a, s) -> (K_{a,a-1}, K_aa, K_{a,a+1}).
REF_STENCILS = {
    (7.0, 0.0): (-1052.5966, 2105.1933, -1052.5966),
    (7.0, 19.0): (-985.2296, 2108.2020, -1122.9724),
    (4.0, 5.0): (-352.1649, 725.5730, -373.4081),
    (10.0, -19.0): (-2201.4435, 4208.1403, -2006.6968),
}

RHOS = np.array([0.3, 1.0, 2.5, 4.0, 7.0, 10.0, 15.0])


def central_diff(f, x, h):
    return (f(x + h) - f(x - h)) / (2.0 * h)


# ----------------------------------------------------------------------------- coefficients
def test_reference_table_p2():
    rho = np.array(sorted(REF_TABLE), dtype=float)
    m_ref = np.array([REF_TABLE[int(r)][0] for r in rho])
    d_ref = np.array([REF_TABLE[int(r)][1] for r in rho])
    np.testing.assert_allclose(hy.mobility(rho, 2), m_ref, rtol=0, atol=1e-6)
    np.testing.assert_allclose(hy.diffusivity(rho, 2), d_ref, rtol=0, atol=1e-6)
    m, m1, _ = hy.mobility_derivatives(rho, 2)
    np.testing.assert_allclose(m, m_ref, rtol=0, atol=1e-6)
    np.testing.assert_allclose(m1, d_ref, rtol=0, atol=1e-6)
    assert isinstance(hy.mobility(7.0, 2), float) and isinstance(hy.diffusivity(7.0, 2), float)


def test_closed_forms_p0_p1():
    r = RHOS
    np.testing.assert_allclose(hy.mobility(r, 1), r / 2, rtol=1e-15)
    np.testing.assert_array_equal(hy.diffusivity(r, 1), np.full_like(r, 0.5))
    m, m1, m2 = hy.mobility_derivatives(r, 1)
    np.testing.assert_allclose(m, r / 2, rtol=1e-15)
    np.testing.assert_array_equal(m1, 0.5)
    np.testing.assert_array_equal(m2, 0.0)
    np.testing.assert_allclose(hy.mobility(r, 0), r / (2 * (1 + r)), rtol=1e-15)
    np.testing.assert_allclose(hy.diffusivity(r, 0), 1 / (2 * (1 + r) ** 2), rtol=1e-15)
    m, m1, m2 = hy.mobility_derivatives(r, 0)
    np.testing.assert_allclose(m2, -1 / (1 + r) ** 3, rtol=1e-15)


@pytest.mark.parametrize("p", P_ALL)
def test_diffusivity_is_derivative_of_mobility(p):
    h = 1e-4 * RHOS
    fd = central_diff(lambda x: hy.mobility(x, p), RHOS, h)
    np.testing.assert_allclose(hy.diffusivity(RHOS, p), fd, rtol=1e-7)
    # D = phi/(2 chi) with the compressibility of cgflow.micro.zrp, for every p
    np.testing.assert_allclose(
        hy.diffusivity(RHOS, p), zrp.fugacity(RHOS, p) / (2 * zrp.compressibility(RHOS, p)), rtol=1e-13
    )


@pytest.mark.parametrize("p", P_ALL)
def test_second_derivative_vs_finite_difference_of_diffusivity(p):
    h = 1e-4 * RHOS
    fd = central_diff(lambda x: hy.diffusivity(x, p), RHOS, h)
    _, m1, m2 = hy.mobility_derivatives(RHOS, p)
    np.testing.assert_allclose(m2, fd, rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(m1, hy.diffusivity(RHOS, p), rtol=1e-15)


@pytest.mark.parametrize("p", P_ALL)
@pytest.mark.parametrize("rho", [0.5, 3.0, 7.0])
def test_derivatives_vs_cumulants_of_site_marginal(p, rho):
    """m' = phi/(2 kappa2), m'' = phi (1 - kappa3/kappa2)/(2 kappa2**2) by direct sums over k."""
    phi = zrp.fugacity(rho, p)
    k = np.arange(4000)
    pk = zrp.site_marginal(k, phi, p)
    assert abs(pk.sum() - 1) < 1e-12
    mean = (k * pk).sum()
    k2 = ((k - mean) ** 2 * pk).sum()
    k3 = ((k - mean) ** 3 * pk).sum()
    assert mean == pytest.approx(rho, rel=1e-12)
    m, m1, m2 = hy.mobility_derivatives(rho, p)
    assert m == pytest.approx(phi / 2, rel=1e-14)
    assert m1 == pytest.approx(phi / (2 * k2), rel=1e-10)
    assert m2 == pytest.approx(phi * (1 - k3 / k2) / (2 * k2**2), rel=1e-8, abs=1e-12)


@pytest.mark.parametrize("p", P_ALL)
def test_thermodynamic_force(p):
    f = hy.thermodynamic_force(RHOS, p)
    np.testing.assert_allclose(f, -np.log(2 * hy.mobility(RHOS, p)), rtol=1e-14, atol=1e-15)
    # dF/drho = -1/chi, hence m grad F = -D grad rho = -(1/2) grad phi (seed eq. (7))
    fd = central_diff(lambda x: hy.thermodynamic_force(x, p), RHOS, 1e-4 * RHOS)
    np.testing.assert_allclose(fd, -1 / zrp.compressibility(RHOS, p), rtol=1e-7)
    np.testing.assert_allclose(hy.mobility(RHOS, p) * fd, -hy.diffusivity(RHOS, p), rtol=1e-7)


# ----------------------------------------------------------------------------- continuum stencils
def test_exact_stencil_reference_table():
    keys = list(REF_STENCILS)
    rho = np.array([k[0] for k in keys])
    s = np.array([k[1] for k in keys])
    got = hy.exact_stencil(rho, s, 40, 2)
    assert got.shape == (4, 3)
    np.testing.assert_allclose(got, np.array([REF_STENCILS[k] for k in keys]), rtol=0, atol=1e-4)
    np.testing.assert_allclose(got.sum(axis=-1), 0.0, atol=1e-12 * np.abs(got).max())


@pytest.mark.parametrize("p", P_ALL)
def test_exact_stencil_properties(p):
    rho = np.linspace(4, 10, 7)[:, None]
    s = np.linspace(-19, 19, 9)[None, :]
    k = hy.exact_stencil(rho, s, 40, p)
    assert k.shape == (7, 9, 3)
    np.testing.assert_allclose(k.sum(axis=-1), 0.0, atol=1e-12 * np.abs(k).max())
    km = hy.exact_stencil(rho, -s, 40, p)
    np.testing.assert_array_equal(k[..., 0], km[..., 2])  # K_{a,a-1}(s) = K_{a,a+1}(-s)
    np.testing.assert_array_equal(k[..., 1], km[..., 1])
    k20 = hy.exact_stencil(rho, s, 40, p, nodes=20)
    np.testing.assert_allclose(k, k20, rtol=1e-10)
    flat = hy.exact_stencil(rho[:, 0], 0.0, 40, p)  # s = 0: (m/Delta) (-1, 2, -1)
    m = hy.mobility(rho[:, 0], p)
    np.testing.assert_allclose(flat, (40 * m)[:, None] * np.array([-1, 2, -1]), rtol=1e-13)
    scalar = hy.exact_stencil(7.0, 19.0, 40, p)
    assert scalar.shape == (3,)


@pytest.mark.parametrize("p, bound", [(0, 1e-4), (1, 1e-14), (2, 1e-6)])
def test_stencil_expansion_vs_exact(p, bound):
    """Delta = 1/40, rho in [4, 10], |s| <= 19: observed max relative error 5.9e-5 (p=0), 5.3e-7 (p=2)."""
    rho, s = np.meshgrid(np.linspace(4, 10, 13), np.linspace(-19, 19, 20))
    exact = hy.exact_stencil(rho, s, 40, p)
    k1, k2 = hy.stencil_expansion(rho, s, 40, p)
    assert k1.shape == k2.shape == exact.shape
    assert np.all(k2[..., 1] == 0.0)
    np.testing.assert_array_equal(k1[..., 0], k1[..., 2])  # Laplacian shape (-1, 2, -1)
    np.testing.assert_array_equal(k1[..., 1], -2 * k1[..., 0])
    np.testing.assert_array_equal(k2[..., 0], -k2[..., 2])  # gradient shape (1, 0, -1)
    rel = np.abs(k1 + k2 - exact) / np.abs(exact)
    assert rel.max() < bound
    # the gradient stencil is the antisymmetric part of the exact stencil to O(s**3)
    anti = 0.5 * (exact[..., 0] - exact[..., 2])
    np.testing.assert_allclose(k2[..., 0], anti, rtol=2e-2 if p == 0 else 1e-3, atol=1e-12)


def test_stencil_expansion_leading_error_p0():
    """The neglected terms are -+ m''' s**3 Delta**2/24 (odd) and -m'''' s**4 Delta**3/120 (even)."""
    rho = np.array([4.0, 7.0, 10.0])
    s, delta = 5.0, 1 / 40
    err = hy.exact_stencil(rho, s, 40, 0) - sum(hy.stencil_expansion(rho, s, 40, 0))
    m3 = 3 / (1 + rho) ** 4
    m4 = -12 / (1 + rho) ** 5
    np.testing.assert_allclose(err[:, 2] - err[:, 0], -m3 * s**3 * delta**2 / 12, rtol=1e-3)
    np.testing.assert_allclose(err[:, 1], m4 * s**4 * delta**3 / 60, rtol=1e-3)


def test_exact_stencil_and_coefficients_reject_bad_input():
    with pytest.raises(ValueError, match="rho <= 0"):
        hy.exact_stencil(0.4, 19.0, 40, 2)  # reaches 0.4 - 19/40 < 0 on the left element
    with pytest.raises(ValueError, match="rho <= 0"):
        hy.exact_stencil([7.0, 0.4], [0.0, -19.0], 40, 2)
    hy.exact_stencil(0.5, 19.0, 40, 2)  # minimum 0.025 > 0 is fine
    for bad in (0.0, -1.0, np.nan):
        with pytest.raises(ValueError):
            hy.mobility(bad, 2)
        with pytest.raises(ValueError):
            hy.mobility_derivatives([1.0, bad], 0)
    for p in (3, -1, 1.0, True, "2"):
        for f in (hy.mobility, hy.diffusivity, hy.thermodynamic_force, hy.mobility_derivatives):
            with pytest.raises(ValueError):
                f(7.0, p)
        with pytest.raises(ValueError):
            hy.exact_stencil(7.0, 0.0, 40, p)
        with pytest.raises(ValueError):
            hy.stencil_expansion(7.0, 0.0, 40, p)
        with pytest.raises(ValueError):
            hy.lattice_operator(np.full(100, 7.0), 10, False, p)
    with pytest.raises(ValueError):
        hy.exact_stencil(7.0, 0.0, 0, 2)


# ----------------------------------------------------------------------------- tabulated fugacity
def test_tabulated_fugacity_matches_newton():
    """The p = 2 table against Newton at 2e5 random densities: relative difference <= 1e-14.

    Measured 5e-15 (rounding of a few ulp; the interpolation remainder is bounded by
    FUGACITY_TABLE_ERROR = 3e-15 absolute). Outside the table range it is Newton itself.
    """
    lo, hi = hy.FUGACITY_TABLE_RANGE
    rng = np.random.default_rng(20191105)
    rho = np.concatenate([rng.uniform(lo, hi, 200_000), rng.uniform(lo, 2.0, 50_000), [lo, hi, 1.0, 7.0]])
    exact = zrp.fugacity(rho, 2)
    tab = hy.tabulated_fugacity(rho, 2)
    assert np.max(np.abs(tab - exact) / exact) <= 1e-14
    small = rho < 2.0  # where |phi''''| is largest: the interpolation remainder bound applies absolutely
    assert np.max(np.abs(tab - exact)[small]) <= hy.FUGACITY_TABLE_ERROR + 4 * np.finfo(float).eps * exact[small].max()
    # the nodes are exact (up to the last-ulp rounding of the basis sum), cell midpoints are interpolated
    nodes = lo + hy.FUGACITY_TABLE_STEP * np.arange(0, 1000, 7)
    np.testing.assert_allclose(hy.tabulated_fugacity(nodes, 2), zrp.fugacity(nodes, 2), rtol=4e-16, atol=0)
    # outside [1/8, 64]: Newton, bitwise; p = 0, 1: the closed forms
    out = np.array([1e-3, 0.1, 64.5, 200.0])
    np.testing.assert_array_equal(hy.tabulated_fugacity(out, 2), zrp.fugacity(out, 2))
    for p in (0, 1):
        np.testing.assert_array_equal(hy.tabulated_fugacity(RHOS, p), zrp.fugacity(RHOS, p))
    # shapes: scalar in, float out; any array shape kept
    assert isinstance(hy.tabulated_fugacity(7.0, 2), float)
    assert hy.tabulated_fugacity(np.full((3, 4, 5), 7.0), 2).shape == (3, 4, 5)
    for bad in (0.0, -1.0, np.nan, np.inf):
        with pytest.raises(ValueError, match="rho"):
            hy.tabulated_fugacity([7.0, bad], 2)
    with pytest.raises(ValueError):
        hy.tabulated_fugacity(7.0, 3)


def test_tabulated_hermite_error_is_fourth_order():
    """The table's remainder bound h**4/384 max|phi''''| is the right law: coarser tables lose 16x per halving."""
    lo = hy.FUGACITY_TABLE_RANGE[0]
    rho = np.linspace(0.5, 1.5, 20001)  # around max|phi''''| (rho ~ 0.83)
    exact = zrp.fugacity(rho, 2)
    errs = []
    for step in (2.0**-4, 2.0**-5, 2.0**-6):
        nodes = lo + step * np.arange(int((2.0 - lo) / step) + 1)
        phi = zrp.fugacity(nodes, 2)
        x = 2 * np.sqrt(phi)
        r = hy.special.ive(1, x) / hy.special.ive(0, x)
        out, inside = np.empty_like(rho), np.empty(rho.size, dtype=bool)
        hy._hermite_table(rho, lo, step, phi, 1 / (1 - r * r), out, inside)
        assert inside.all()
        err = np.max(np.abs(out - exact))
        assert err <= step**4 / 384 * 1.2  # the bound with max|phi''''| <= 1.2
        errs.append(err)
    assert 10 < errs[0] / errs[1] < 20 and 10 < errs[1] / errs[2] < 20


def test_tabulated_stencil_and_force_match_newton():
    rho, s = np.meshgrid(np.linspace(1.0, 14.0, 27), np.linspace(-19.0, 19.0, 11), indexing="ij")
    for n_el in (20, 40):
        exact = hy.exact_stencil(rho, s, n_el, 2)
        tab = hy.exact_stencil(rho, s, n_el, 2, tabulated=True)
        assert np.max(np.abs(tab - exact)) <= 1e-14 * np.max(np.abs(exact))
        assert np.max(np.abs(tab.sum(axis=-1))) <= 1e-12 * np.max(np.abs(tab))  # rows still sum to zero
    f = hy.thermodynamic_force(rho, 2)
    np.testing.assert_allclose(hy.thermodynamic_force(rho, 2, tabulated=True), f, rtol=0, atol=1e-14 * np.abs(f).max())
    with pytest.raises(ValueError, match="rho <= 0"):
        hy.exact_stencil(0.4, 19.0, 40, 2, tabulated=True)
    with pytest.raises(ValueError):
        hy.thermodynamic_force(-1.0, 2, tabulated=True)


# ----------------------------------------------------------------------------- lattice operator
def smooth_profile(L):
    x = zrp.site_positions(L)
    return 6.0 + 2.0 * np.sin(2 * np.pi * x) + 0.5 * np.cos(6 * np.pi * x)


@pytest.mark.parametrize("periodic", [False, True])
@pytest.mark.parametrize("L, N", [(600, 12), (97, 7)])
def test_lattice_operator_structure(periodic, L, N):
    k = hy.lattice_operator(smooth_profile(L), N, periodic, 2)
    n_nodes = N if periodic else N + 1
    assert k.shape == (n_nodes, n_nodes)
    np.testing.assert_array_equal(k, k.T)
    a, b = np.indices(k.shape)
    dist = np.abs(a - b)
    if periodic:
        dist = np.minimum(dist, n_nodes - dist)
    assert np.all(k[dist >= 3] == 0.0)
    if L % N == 0:  # nodes on sites: every bond inside one element, so exactly tridiagonal
        assert np.all(k[dist == 2] == 0.0)
    assert np.all(k[dist == 1] < 0) and np.all(np.diag(k) > 0)
    np.testing.assert_allclose(k.sum(axis=1), 0.0, atol=1e-12 * np.abs(k).max())  # every row, closed ends too


def test_carre_du_champ_weights_exact_values():
    """x_i = i/L, L = nN: every bond of element e changes hat e by -1/n and hat e+1 by +1/n, nothing else."""
    L, N = 60, 6
    n = L // N
    for periodic in (False, True):
        dg = hy.carre_du_champ_weights(L, N, periodic)
        n_nodes, n_bonds = (N, L) if periodic else (N + 1, L - 1)
        assert dg.shape == (n_nodes, n_bonds)
        np.testing.assert_array_equal(dg.sum(axis=0), 0.0)
        for e in range(N):
            bonds = np.arange(e * n, min(e * n + n, n_bonds))  # bond i joins sites i, i+1
            right = (e + 1) % N if periodic else e + 1
            np.testing.assert_array_equal(dg[e, bonds], -1 / n)
            np.testing.assert_array_equal(dg[right, bonds], 1 / n)
            others = np.setdiff1d(np.arange(n_nodes), [e, right])
            np.testing.assert_array_equal(dg[np.ix_(others, bonds)], 0.0)
    assert hy.carre_du_champ_weights(L, N, False)[N, L - 2] == 1 / n  # the closed lattice's last bond


@pytest.mark.parametrize("periodic", [False, True])
def test_lattice_operator_flat_equals_continuum(periodic):
    """Flat phi, L = nN: exactly the continuum stencil (-N phi/2, N phi, -N phi/2), nothing further out."""
    L, N = 5000, 40
    phi = zrp.fugacity(7.0, 2)
    k = hy.lattice_operator(np.full(L, 7.0), N, periodic, 2)
    expect = np.array([0.0, -N * phi / 2, N * phi, -N * phi / 2, 0.0])
    rows = range(N) if periodic else range(2, N - 1)
    for b in rows:
        band = k[b, [(b + d) % k.shape[0] for d in range(-2, 3)]]
        np.testing.assert_allclose(band, expect, rtol=1e-12, atol=0)
    np.testing.assert_allclose(hy.exact_stencil(7.0, 0.0, N, 2), expect[1:4], rtol=1e-12)


@pytest.mark.parametrize("rho_a, s", [(7.0, 0.0), (10.0, 19.0), (4.0, 5.0), (10.0, -19.0)])
def test_lattice_operator_vs_continuum(rho_a, s):
    """L = 5000, N = 40: the lattice operator agrees with the continuum one to 4 decimals (REFERENCE §1).

    Over an element the lattice sum is a midpoint-like rule for the integral of m, exact to O(1/n**2).
    """
    L, N = 5000, 40
    x = zrp.site_positions(L)
    k = hy.lattice_operator(rho_a + s * (x - 0.5), N, False, 2)
    lat = k[20, 19:22]  # node 20 sits at x = 1/2
    cont = hy.exact_stencil(rho_a, s, N, 2)
    np.testing.assert_allclose(lat, cont, rtol=1e-4)
    assert k[20, 18] == 0.0 and k[20, 22] == 0.0


@pytest.mark.parametrize(
    "periodic, L, N",
    [(False, 5000, 40), (True, 1000, 40), (False, 600, 12), (True, 600, 12), (False, 97, 7), (True, 97, 7),
     (False, 503, 10), (True, 503, 10)],
)
def test_carre_du_champ_stencil_matches_lattice_operator(periodic, L, N):
    rho = smooth_profile(L)
    phi = zrp.fugacity(rho, 2)
    r = 0.5 * (phi + np.roll(phi, -1)) if periodic else 0.5 * (phi[:-1] + phi[1:])
    k = hy.lattice_operator(rho, N, periodic, 2)
    n_nodes = k.shape[0]
    for hw in (1, 2):
        st = hy.carre_du_champ_stencil(r, L, N, periodic, half_width=hw)
        assert st.shape == (n_nodes, 2 * hw + 1)
        for j, d in enumerate(range(-hw, hw + 1)):
            b = np.arange(n_nodes)
            nb = b + d
            if periodic:
                nb %= n_nodes
                exists = np.ones(n_nodes, bool)
            else:
                exists = (nb >= 0) & (nb < n_nodes)
            np.testing.assert_allclose(st[exists, j], k[b[exists], nb[exists]], rtol=1e-12, atol=1e-12 * k.max())
            assert np.all(st[~exists, j] == 0.0)  # closed ends: nothing towards missing nodes
    if not periodic:
        assert st[0, 0] == st[0, 1] == 0.0 and st[-1, -1] == st[-1, -2] == 0.0


def test_carre_du_champ_stencil_batches():
    L, N = 600, 12
    rng = np.random.default_rng(3)
    r = rng.uniform(0.0, 80.0, size=(2, 3, L - 1))
    st = hy.carre_du_champ_stencil(r, L, N, False)
    assert st.shape == (2, 3, N + 1, 3)
    dg = hy.carre_du_champ_weights(L, N, False)
    for idx in np.ndindex(2, 3):
        k = (L / 2) * (dg * r[idx]) @ dg.T
        band = np.stack([np.diag(k, -1)[:-1], np.diag(k)[1:-1], np.diag(k, 1)[1:]], axis=1)  # interior rows
        np.testing.assert_allclose(st[idx][1:-1], band, rtol=1e-12)
        np.testing.assert_allclose(st[idx][0, 1:], [k[0, 0], k[0, 1]], rtol=1e-12)
    single = hy.carre_du_champ_stencil(r[1, 2], L, N, False)
    np.testing.assert_array_equal(single, st[1, 2])


def test_lattice_and_stencil_reject_bad_input():
    with pytest.raises(ValueError, match="rho_sites"):
        hy.lattice_operator(np.array([7.0, -1.0, 7.0, 7.0]), 2, False, 2)
    with pytest.raises(ValueError):
        hy.lattice_operator(np.full((10, 10), 7.0), 2, False, 2)
    with pytest.raises(ValueError):
        hy.lattice_operator(np.full(10, 7.0), 11, False, 2)  # more elements than sites
    with pytest.raises(ValueError):
        hy.carre_du_champ_stencil(np.ones(100), 100, 10, False)  # closed lattice has 99 bonds
    with pytest.raises(ValueError):
        hy.carre_du_champ_stencil(np.ones(100), 100, 4, True)  # periodic needs N >= 5
    with pytest.raises(ValueError):
        hy.carre_du_champ_stencil(np.ones(99), 100, 10, False, half_width=3)
    with pytest.raises(ValueError):
        hy.carre_du_champ_weights(100, 1, True)
    k0 = hy.lattice_operator(np.array([0.0, 2.0, 3.0, 0.0, 1.0, 1.0]), 2, False, 1)  # empty sites allowed
    assert np.all(np.isfinite(k0))


@pytest.mark.parametrize("periodic", [False, True])
def test_lattice_mean_field(periodic):
    """p = 1 is linear: E eta(t) = expm(t Lap/2) eta(0) exactly; p = 2 conserves mass and keeps flat profiles."""
    from scipy.linalg import expm

    L = 60
    rho0 = 3.0 + 2.0 * np.sin(2 * np.pi * zrp.site_positions(L)) + (0.0 if periodic else np.linspace(0, 1, L))
    lap = np.diag(-2.0 * np.ones(L)) + np.diag(np.ones(L - 1), 1) + np.diag(np.ones(L - 1), -1)
    if periodic:
        lap[0, -1] = lap[-1, 0] = 1.0
    else:
        lap[0, 0] = lap[-1, -1] = -1.0
    exact = expm(25.0 * lap / 2) @ rho0
    np.testing.assert_allclose(hy.lattice_mean_field(rho0, 25.0, 1, periodic), exact, rtol=1e-6)
    out = hy.lattice_mean_field(rho0, 25.0, 2, periodic)
    assert abs(out.sum() - rho0.sum()) < 1e-8 * rho0.sum()
    np.testing.assert_allclose(hy.lattice_mean_field(np.full(L, 7.0), 25.0, 2, periodic), 7.0, rtol=1e-10)
    with pytest.raises(ValueError):
        hy.lattice_mean_field(rho0, -1.0, 2, periodic)
