"""Table 2 as data and as a figure: how each of the six U-Net variants is wired (conv block kind, merge kind,
channel widths read off the built models of :func:`endolib.models.factory.create_model`), and the diagram
``fig_table2_architectures`` (also saved as ``results/<profile>/table2_architectures.csv``); introspected from the
modules, so the table cannot drift from the code.

Example:
    >>> t = architecture_table()
    >>> t.loc[(t.model == "aunet") & (t.level == 1), ["resolution", "c_inter", "c_out", "c_attn"]].values.tolist()
    [['256x256', 16, 64, 16]]
"""
from __future__ import annotations

import pandas as pd

from endolib.evaluation.qualitative import _arrow, _box, _label
from endolib.plotting import PALETTE

__all__ = ["architecture_table", "table2_layout", "architecture_figure"]


#: Paper wording of the ConvBlock and MergeBlock kinds in Table 2.
CONV_NAMES = {"standard": "standard", "residual": "residual", "recurrent": "recurrent residual"}
MERGE_NAMES = {"concat": "concat", "attention": "attention"}
#: Colours of the ConvBlock kinds and MergeBlock kinds in the architecture figure.
CONV_COLOURS = {"standard": PALETTE[0], "residual": PALETTE[2], "recurrent": PALETTE[4]}
MERGE_COLOURS = {"concat": PALETTE[8], "attention": PALETTE[3]}


# ---------------------------------------------------------------------------------------------- Table 2
def _conv_info(block) -> dict:
    """Kind and widths of one :class:`endolib.models.blocks.ConvBlock`, read from its layers."""
    if block.kind == "recurrent":
        unit = block.body[0]
        weights = "shared" if len(unit.units) == 1 else "separate"
        return {"conv_block": CONV_NAMES[block.kind], "c_inter": None, "c_out": block.entry.out_channels,
                "recurrent": f"{len(block.body)} units, t={unit.steps}, {weights} weights"}
    return {"conv_block": CONV_NAMES[block.kind], "c_inter": block.body[0][0].out_channels,
            "c_out": block.body[1][0].out_channels, "recurrent": None}


def _merge_info(merge) -> dict:
    """Kind and attention width of one :class:`endolib.models.blocks.MergeBlock`, read from its layers."""
    attn = merge.gate.w_gate[0].out_channels if merge.kind == "attention" else None
    return {"merge_block": MERGE_NAMES[merge.kind], "c_attn": attn, "merge_out": merge.out_channels}


def architecture_table(width_mult: float = 1.0, size: int | None = None, models=None) -> pd.DataFrame:
    """Table 2 introspected from the built U-Net variants: one row per (model, level).

    Args:
        width_mult: width multiplier passed to :func:`endolib.models.factory.create_model` (1.0 = the paper's Table 2).
        size: input side for the resolution column (default: the paper's 256).
        models: U-Net variants (default: all six, in the paper's order).

    Returns:
        Columns ``model, label, level, resolution, conv_block, merge_block, c_inter, c_out, c_attn, merge_out,
        recurrent, params_m``: ``merge_block``/``c_attn``/``merge_out`` describe the decoder MergeBlock of that
        level (none at the bottleneck, level 4), ``merge_out`` is the width it hands to the decoder ConvBlock,
        ``params_m`` the model's trainable parameters in millions.

    Example:
        >>> t = architecture_table(width_mult=0.5, models=["unet"])
        >>> t.c_out.tolist(), t.resolution.tolist()[-1]
        ([32, 64, 128, 256], '32x32')
    """
    from endolib.models.factory import count_parameters, create_model, paper_input_size
    from endolib.models.unet import UNET_VARIANTS

    models = list(UNET_VARIANTS) if models is None else list(models)
    rows = []
    for m in models:
        if m not in UNET_VARIANTS:
            raise ValueError(f"{m!r} is not a U-Net variant; valid: {', '.join(UNET_VARIANTS)}")
        net = create_model(m, width_mult=width_mult)
        side = size or paper_input_size(m)
        levels = len(net.encoder)
        merges = {levels - 2 - k: (mb, dec) for k, (mb, dec) in enumerate(zip(net.merges, net.decoder))}
        params = count_parameters(net) / 1e6
        for lvl, block in enumerate(net.encoder):
            row = {"model": m, "label": _label(m), "level": lvl + 1,
                   "resolution": f"{side // 2 ** lvl}x{side // 2 ** lvl}", **_conv_info(block),
                   "merge_block": None, "c_attn": None, "merge_out": None}
            if lvl in merges:
                merge, dec = merges[lvl]
                if _conv_info(dec) != _conv_info(block):
                    raise RuntimeError(f"{m}: decoder ConvBlock of level {lvl + 1} differs from the encoder's "
                                       f"({_conv_info(dec)} vs {_conv_info(block)}); Table 2 assumes they match")
                row.update(_merge_info(merge))
            rows.append({**row, "params_m": round(params, 2)})
    cols = ["model", "label", "level", "resolution", "conv_block", "merge_block", "c_inter", "c_out", "c_attn",
            "merge_out", "recurrent", "params_m"]
    df = pd.DataFrame(rows, columns=cols)
    for c in ("c_inter", "c_attn", "merge_out"):
        df[c] = df[c].astype("Int64")
    return df


def table2_layout(table: pd.DataFrame) -> pd.DataFrame:
    """The long table of :func:`architecture_table` condensed to the paper's Table 2 (one row per variant,
    widths per level as comma-separated lists; the paper prints this table transposed).

    Example:
        >>> table2_layout(architecture_table(models=["aunet"])).loc["AU-Net", "C_attn L1..L3"]
        '16, 32, 64'
    """
    def widths(values) -> str:
        values = [v for v in values if pd.notna(v)]
        return ", ".join(str(int(v)) for v in values) if values else "n/a"

    cols = {}
    for m, rows in table.groupby("model", sort=False):
        rows = rows.sort_values("level")
        decoder = rows[rows["merge_block"].notna()]
        cols[rows["label"].iloc[0]] = {
            "ConvBlock": rows["conv_block"].iloc[0],
            "MergeBlock": decoder["merge_block"].iloc[0],
            "C_inter L1..L4": widths(rows["c_inter"]),
            "C_out L1..L4": widths(rows["c_out"]),
            "C_attn L1..L3": widths(decoder["c_attn"]),
            "parameters (M)": f"{rows['params_m'].iloc[0]:.2f}",
        }
    return pd.DataFrame(cols).T


def _u_panel(ax, rows: pd.DataFrame) -> None:
    """One U-Net variant as a U: encoder blocks down the left, bottleneck, decoder blocks up the right."""
    levels = len(rows)
    bw, bh = 0.9, 0.62
    ax.set_xlim(-1.45, 3.0)
    ax.set_ylim(-0.55, levels - 0.45)
    ax.axis("off")
    pos_enc = {lvl: (0.0, levels - lvl) for lvl in range(1, levels)}
    pos_enc[levels] = (0.8, 0.0)
    pos_dec = {lvl: (1.6, levels - lvl) for lvl in range(1, levels)}
    for r in rows.itertuples():
        kind = next(k for k, v in CONV_NAMES.items() if v == r.conv_block)
        text = f"{r.c_out}" + (f" ({r.c_inter})" if pd.notna(r.c_inter) else "")
        places = [pos_enc[r.level]] + ([pos_dec[r.level]] if r.level in pos_dec else [])
        for xy in places:
            _box(ax, (xy[0] + bw / 2, xy[1]), bw, bh, text, _tint(CONV_COLOURS[kind]), fontsize=7)
        ax.text(-0.12, pos_enc[r.level][1], r.resolution.replace("x", "\u00d7"), ha="right", va="center",
                fontsize=6.5, color="#444444")
        if r.level in pos_dec:
            mkind = next(k for k, v in MERGE_NAMES.items() if v == r.merge_block)
            y = pos_enc[r.level][1]
            ax.annotate("", xy=(pos_dec[r.level][0], y), xytext=(bw, y),
                        arrowprops={"arrowstyle": "-|>", "color": MERGE_COLOURS[mkind], "lw": 1.2,
                                    "shrinkA": 0, "shrinkB": 0})
            label = "cat" if mkind == "concat" else f"att {r.c_attn}"
            ax.text((bw + pos_dec[r.level][0]) / 2, y + 0.1, label, ha="center", va="bottom", fontsize=6.5,
                    color=MERGE_COLOURS[mkind])
    for lvl in range(1, levels):  # pooling down the left, upsampling up the right
        a, b = pos_enc[lvl], pos_enc[lvl + 1]
        _arrow(ax, (a[0] + bw / 2, a[1] - bh / 2), (b[0] + bw / 2 - (0.25 if lvl == levels - 1 else 0),
                                                    b[1] + bh / 2), colour="#555555")
        up_from = pos_dec.get(lvl + 1, (pos_enc[levels][0] + 0.25, 0.0))
        _arrow(ax, (up_from[0] + bw / 2, up_from[1] + bh / 2), (pos_dec[lvl][0] + bw / 2, pos_dec[lvl][1] - bh / 2),
               colour="#555555")


def _tint(colour: str, amount: float = 0.55) -> tuple:
    from matplotlib.colors import to_rgb

    return tuple(c + (1 - c) * amount for c in to_rgb(colour))


def architecture_figure(table: pd.DataFrame, ncols: int = 3):
    """The Table 2 figure: one U per variant with C_out (C_inter) per block, the resolution per level, and the
    MergeBlock of each skip connection (cat = concatenation, att C_attn = attention gate).

    Args:
        table: from :func:`architecture_table`.
        ncols: panels per row.

    Returns:
        The matplotlib Figure.
    """
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    models = list(dict.fromkeys(table["model"]))
    nrows = -(-len(models) // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(7.2, 2.35 * nrows + 0.5), squeeze=False)
    for ax, m in zip(axes.flat, models):
        rows = table[table["model"] == m].sort_values("level")
        _u_panel(ax, rows)
        first = rows.iloc[0]
        sub = f"{first['conv_block']} + {first['merge_block']}"
        if isinstance(first["recurrent"], str):
            sub += f"\n({first['recurrent'].split(', ', 1)[1]})"
        ax.set_title(f"{first['label']}  ({first['params_m']:.2f} M parameters)\n{sub}", fontsize=8)
    for ax in list(axes.flat)[len(models):]:
        ax.axis("off")
    handles = [Patch(facecolor=_tint(CONV_COLOURS[k]), edgecolor="black", label=f"{v} ConvBlock")
               for k, v in CONV_NAMES.items()]
    handles += [Line2D([], [], color=MERGE_COLOURS[k], lw=1.5, label=f"{v} MergeBlock") for k, v in MERGE_NAMES.items()]
    fig.legend(handles=handles, loc="lower center", ncol=5, frameon=False, fontsize=7, bbox_to_anchor=(0.5, 0.0),
               handlelength=1.5, columnspacing=1.0)
    fig.text(0.5, 0.045, "block label: C_out (C_inter) channels; cat = concatenation; att n = attention gate of "
             "width C_attn = n; arrows down: 2\u00d72 max pooling, up: 2\u00d7 upsampling", ha="center",
             va="bottom", fontsize=7, color="#333333")
    fig.tight_layout(rect=(0, 0.08, 1, 1))
    return fig
