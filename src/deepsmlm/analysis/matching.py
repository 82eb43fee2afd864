"""Per-frame matching of predicted localizations to ground truth (EPFL SMLM challenge conventions).

A GT emitter and a prediction may pair only when they lie in the same frame, within ``lateral_tol``
(nm, inclusive) in xy and, when both tables are 3D, within ``axial_tol`` (nm, inclusive) in z. Pairs
beyond tolerance are removed before any assignment. Two assignments over the feasible pairs:

- ``hungarian``: the most pairs first, then the least summed Euclidean distance (3D when both tables
  have z, else lateral), solved exactly with ``scipy.optimize.linear_sum_assignment``;
- ``greedy`` (the challenge's closest-first): repeatedly take the closest remaining feasible pair.

All frames are handled at once: a KD-tree over (x, y, frame·step), with step larger than the lateral
tolerance, finds the feasible pairs without ever pairing two frames, and the bipartite graph of those
pairs splits into connected components that are solved independently (most of them one-to-one).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import linear_sum_assignment
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from scipy.spatial import cKDTree

from deepsmlm.errors import UserInputError
from deepsmlm.localizations import Localizations

METHODS = ("hungarian", "greedy")


@dataclass(frozen=True)
class Matches:
    """Matched pairs as positional row indices into the GT and prediction tables, plus counts.

    ``n_gt``/``n_pred`` count the rows that took part (after border exclusion); ``three_d`` says
    whether z entered the matching (both tables have z).
    """

    gt_idx: np.ndarray
    pred_idx: np.ndarray
    n_gt: int
    n_pred: int
    three_d: bool

    @property
    def n_tp(self) -> int:
        return int(len(self.gt_idx))

    @property
    def n_fp(self) -> int:
        return self.n_pred - self.n_tp

    @property
    def n_fn(self) -> int:
        return self.n_gt - self.n_tp


def check_method(method: str) -> str:
    """The method name, or a one-line error listing the choices."""
    if method not in METHODS:
        raise UserInputError(f"unknown matching method '{method}' (use {' or '.join(METHODS)})")
    return method


def feasible_pairs(frame_g: np.ndarray, xyz_g: np.ndarray, frame_p: np.ndarray, xyz_p: np.ndarray,
                   lateral_tol: float, axial_tol: float | None, use_z: bool
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Same-frame pairs within tolerance: (gt row, pred row, distance nm; 3D if ``use_z`` else lateral)."""
    empty = np.empty(0, np.int64)
    if not len(xyz_g) or not len(xyz_p):
        return empty, empty, np.empty(0)
    step = 2.0 * lateral_tol + 1.0  # frames are ≥ step apart on the third axis: never within tolerance

    def points(frame: np.ndarray, xyz: np.ndarray) -> np.ndarray:
        return np.column_stack([xyz[:, 0], xyz[:, 1], frame.astype(np.float64) * step])

    radius = lateral_tol * (1 + 1e-9) + 1e-9  # a hair wide; the exact test follows
    pairs = cKDTree(points(frame_g, xyz_g)).sparse_distance_matrix(
        cKDTree(points(frame_p, xyz_p)), radius, output_type="ndarray")
    i, j = pairs["i"].astype(np.int64), pairs["j"].astype(np.int64)
    diff = xyz_p[j] - xyz_g[i]
    lateral = np.hypot(diff[:, 0], diff[:, 1])
    ok = lateral <= lateral_tol
    dist = lateral
    if use_z:
        dz = np.abs(diff[:, 2])
        if axial_tol is not None:
            ok &= dz <= axial_tol
        dist = np.hypot(lateral, dz)
    return i[ok], j[ok], dist[ok]


def _greedy(i: np.ndarray, j: np.ndarray, d: np.ndarray, n_g: int, n_p: int) -> tuple[np.ndarray, np.ndarray]:
    """Closest-first matching, vectorised: with edges totally ordered by (distance, gt, pred), an edge
    that is the first remaining edge of both its ends is the one greedy would take; take all such
    edges, drop the edges touching them, repeat."""
    order = np.lexsort((j, i, d))
    i, j = i[order], j[order]
    rank = np.arange(len(i))
    got_g, got_p = [], []
    while len(i):
        first_g = np.full(n_g, len(order))
        first_p = np.full(n_p, len(order))
        np.minimum.at(first_g, i, rank)
        np.minimum.at(first_p, j, rank)
        win = (first_g[i] == rank) & (first_p[j] == rank)
        got_g.append(i[win])
        got_p.append(j[win])
        taken_g = np.zeros(n_g, bool)
        taken_p = np.zeros(n_p, bool)
        taken_g[i[win]] = True
        taken_p[j[win]] = True
        keep = ~(taken_g[i] | taken_p[j])
        i, j, rank = i[keep], j[keep], rank[keep]
    return (np.concatenate(got_g), np.concatenate(got_p)) if got_g else (i, j)


def _hungarian(i: np.ndarray, j: np.ndarray, d: np.ndarray, n_g: int, n_p: int) -> tuple[np.ndarray, np.ndarray]:
    """Maximum-cardinality, then minimum-total-distance matching, one connected component at a time.

    A component with a single GT or a single prediction takes its shortest edge (vectorised). The others
    go to ``linear_sum_assignment`` on a dense cost: distance for feasible pairs, a constant larger than
    the sum of all feasible distances otherwise, so each infeasible pair assigned costs more than any
    saving in distance — the cardinality is maximised first. Assigned infeasible pairs are dropped.
    """
    if not len(i):
        return i, j
    graph = coo_matrix((np.ones(len(i), np.int8), (i, n_g + j)), shape=(n_g + n_p, n_g + n_p))
    n_comp, label = connected_components(graph, directed=False)
    label_g, label_p = label[:n_g], label[n_g:]
    count_g = np.bincount(label_g, minlength=n_comp)
    count_p = np.bincount(label_p, minlength=n_comp)
    comp = label_g[i]
    simple = (count_g[comp] == 1) | (count_p[comp] == 1)

    order = np.flatnonzero(simple)[np.lexsort((d[simple], comp[simple]))]
    head = np.ones(len(order), bool)
    head[1:] = comp[order][1:] != comp[order][:-1]
    out_g, out_p = [i[order[head]]], [j[order[head]]]

    # local index of each node within its component (rows/columns of that component's cost matrix)
    nodes_g, nodes_p = np.argsort(label_g, kind="stable"), np.argsort(label_p, kind="stable")
    start_g = np.concatenate([[0], np.cumsum(count_g)[:-1]])
    start_p = np.concatenate([[0], np.cumsum(count_p)[:-1]])
    local_g, local_p = np.empty(n_g, np.int64), np.empty(n_p, np.int64)
    local_g[nodes_g] = np.arange(n_g) - start_g[label_g[nodes_g]]
    local_p[nodes_p] = np.arange(n_p) - start_p[label_p[nodes_p]]

    hard = np.flatnonzero(~simple)
    hard = hard[np.argsort(comp[hard], kind="stable")]
    starts = np.flatnonzero(np.diff(comp[hard], prepend=-1))
    ends = np.append(starts[1:], len(hard))
    comps = comp[hard[starts]]
    bigs = np.add.reduceat(d[hard], starts) + 1.0 if len(hard) else np.empty(0)
    rows_h, cols_h, cost_h = local_g[i[hard]], local_p[j[hard]], d[hard]
    pos_g, pos_p = [], []  # positions in nodes_g / nodes_p of the pairs kept
    for s, e, c, big in zip(starts.tolist(), ends.tolist(), comps.tolist(), bigs.tolist()):
        cost = np.full((count_g[c], count_p[c]), big)
        cost[rows_h[s:e], cols_h[s:e]] = cost_h[s:e]
        rows, cols = linear_sum_assignment(cost)
        ok = cost[rows, cols] < big
        pos_g.append(start_g[c] + rows[ok])
        pos_p.append(start_p[c] + cols[ok])
    if pos_g:
        out_g.append(nodes_g[np.concatenate(pos_g)])
        out_p.append(nodes_p[np.concatenate(pos_p)])
    return np.concatenate(out_g), np.concatenate(out_p)


def _assign(frame_g: np.ndarray, xyz_g: np.ndarray, frame_p: np.ndarray, xyz_p: np.ndarray, lateral_tol: float,
            axial_tol: float | None, use_z: bool, method: str) -> tuple[np.ndarray, np.ndarray]:
    """Matched (gt row, pred row) pairs, sorted by gt row."""
    solve = {"hungarian": _hungarian, "greedy": _greedy}[check_method(method)]
    i, j, d = feasible_pairs(frame_g, xyz_g, frame_p, xyz_p, lateral_tol, axial_tol, use_z)
    g, p = solve(i, j, d, len(xyz_g), len(xyz_p))
    order = np.argsort(g, kind="stable")
    return g[order].astype(np.int64), p[order].astype(np.int64)


def match_frame(gt_xyz: np.ndarray, pred_xyz: np.ndarray, lateral_tol: float, axial_tol: float | None,
                method: str = "hungarian") -> tuple[np.ndarray, np.ndarray]:
    """Match one frame's positions ((n, 3) and (m, 3), nm); z counts when both sides have a nonzero z.

    Returns (gt_idx, pred_idx), the row indices of the matched pairs.
    """
    gt_xyz = np.asarray(gt_xyz, dtype=np.float64).reshape(-1, 3)
    pred_xyz = np.asarray(pred_xyz, dtype=np.float64).reshape(-1, 3)
    use_z = bool(np.any(gt_xyz[:, 2] != 0) and np.any(pred_xyz[:, 2] != 0))
    return _assign(np.zeros(len(gt_xyz), np.int64), gt_xyz, np.zeros(len(pred_xyz), np.int64), pred_xyz,
                   lateral_tol, axial_tol, use_z, method)


def field_extent(gt: Localizations, pred: Localizations) -> tuple[float, float] | None:
    """(width, height) of the camera field in nm from either table's image shape and pixel size."""
    return gt.meta.field_nm or pred.meta.field_nm


def inside(locs: Localizations, border_nm: float, field_nm: tuple[float, float]) -> np.ndarray:
    """Rows at least ``border_nm`` from every edge of the field [0, width] × [0, height] (nm)."""
    x, y = locs.table["x_nm"].to_numpy(), locs.table["y_nm"].to_numpy()
    width, height = field_nm
    return (x >= border_nm) & (x <= width - border_nm) & (y >= border_nm) & (y <= height - border_nm)


def match(gt: Localizations, pred: Localizations, lateral_tol_nm: float = 250.0, axial_tol_nm: float | None = 500.0,
          method: str = "hungarian", border_nm: float = 0.0, field_nm: tuple[float, float] | None = None) -> Matches:
    """Match predictions to ground truth frame by frame.

    ``axial_tol_nm`` (None: no axial limit) and 3D distances apply only when both tables have z. With
    ``border_nm`` > 0, GT emitters and predictions closer than ``border_nm`` to the field edge are dropped
    before matching (they are neither TP, FP nor FN); the field is ``field_nm`` = (width, height) in nm
    from the origin, else the image shape × pixel size of the GT's (then the predictions') metadata.
    """
    check_method(method)
    use_z = gt.has_z and pred.has_z
    keep_g, keep_p = np.ones(len(gt), bool), np.ones(len(pred), bool)
    if border_nm > 0:
        field_nm = field_nm or field_extent(gt, pred)
        if field_nm is None:
            raise UserInputError(f"border exclusion of {border_nm:g} nm needs the field size "
                                 "(image shape and pixel size)")
        keep_g, keep_p = inside(gt, border_nm, field_nm), inside(pred, border_nm, field_nm)
    rows_g, rows_p = np.flatnonzero(keep_g), np.flatnonzero(keep_p)

    def columns(locs: Localizations, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        t = locs.table
        return t["frame"].to_numpy()[rows], t[["x_nm", "y_nm", "z_nm"]].to_numpy(np.float64)[rows]

    g, p = _assign(*columns(gt, rows_g), *columns(pred, rows_p), lateral_tol_nm, axial_tol_nm, use_z, method)
    return Matches(rows_g[g], rows_p[p], len(rows_g), len(rows_p), use_z)
