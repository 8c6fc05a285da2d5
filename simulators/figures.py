"""Figures and the HTML page of ``simab world``, drawn from the ``summary.summarize`` dict."""

from __future__ import annotations

import html
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

_STYLE = {"figure.dpi": 110, "axes.spines.top": False, "axes.spines.right": False, "axes.grid": True,
          "grid.alpha": 0.3, "font.size": 9}


def _save(fig, path: Path) -> str:
    fig.tight_layout()
    fig.savefig(path, format="png")
    plt.close(fig)
    return path.name


def ctr_by_position(s: dict, out: Path) -> str:
    with plt.rc_context(_STYLE):
        fig, ax = plt.subplots(figsize=(6.4, 3.8))
        for i, (name, sc) in enumerate(s["scenarios"].items()):
            ctr = np.asarray(sc["explored_ctr_by_position"])
            p = np.arange(len(ctr))
            color = f"C{i}"
            ax.plot(p + 1, ctr, "o", color=color, label=f"{name} (fitted decay {sc['position_decay_fitted']:.2f})")
            if len(ctr) and ctr[0] > 0:
                ax.plot(p + 1, ctr[0] * (1.0 + p) ** -sc["position_decay_spec"], "-", color=color, alpha=0.6)
        ax.set_xlabel("position (1 = top)")
        ax.set_ylabel("CTR of explored exposures")
        ax.set_title("CTR by position; lines: preset (1+p)^-decay scaled to position 1", fontsize=9)
        ax.legend(fontsize=7, frameon=False)
        return _save(fig, out / "ctr_by_position.png")


def ctr_by_scenario(s: dict, out: Path) -> str:
    names = list(s["scenarios"])
    sc = [s["scenarios"][n] for n in names]
    with plt.rc_context(_STYLE):
        fig, (a1, a2) = plt.subplots(1, 2, figsize=(7.6, 3.2))
        x = np.arange(len(names))
        a1.bar(x - 0.2, [v["ctr"] for v in sc], 0.4, label="realised CTR")
        a1.bar(x + 0.2, [v["mean_p_click"] for v in sc], 0.4, label="mean true P(click)")
        a1.set_xticks(x, names, rotation=20, fontsize=7)
        a1.set_title("CTR per scenario")
        a1.legend(fontsize=7, frameon=False)
        a2.bar(x - 0.2, [v["traffic_spec"] for v in sc], 0.4, label="preset share")
        a2.bar(x + 0.2, [v["traffic_observed"] for v in sc], 0.4, label="observed share of requests")
        a2.set_xticks(x, names, rotation=20, fontsize=7)
        a2.set_title("traffic per scenario")
        a2.legend(fontsize=7, frameon=False)
        return _save(fig, out / "ctr_by_scenario.png")


def sessions(s: dict, out: Path) -> str:
    ss = s["sessions"]
    with plt.rc_context(_STYLE):
        fig, (a1, a2) = plt.subplots(1, 2, figsize=(7.6, 3.2))
        h = np.asarray(ss["requests_per_session_hist"], float)
        a1.bar(np.arange(len(h)), h / max(h.sum(), 1))
        a1.set_xlabel("ranking requests per session (20 = 20+)")
        a1.set_ylabel("share of sessions")
        a1.set_title(f"session length (mean {ss['requests_per_session_mean']:.1f})")
        r = np.asarray(ss["return_time_h"])
        if r.size:
            a2.hist(np.log10(np.maximum(r, 1e-3)), bins=40)
        a2.set_xlabel("hours to the next session (log10)")
        a2.set_title("return time")
        return _save(fig, out / "sessions.png")


def histories(s: dict, out: Path) -> str:
    h = s["histories"]
    with plt.rc_context(_STYLE):
        fig, ax = plt.subplots(figsize=(6.4, 3.2))
        for key, label in (("short_seq_len_hist", "short target-domain sequence"), ("aiseq_len_hist", "AISeq"),
                           ("moveline_len_hist", "moveline")):
            v = np.asarray(h[key], float)
            ax.plot(np.arange(len(v)), v / max(v.sum(), 1), drawstyle="steps-mid", label=label)
        ax.set_xlabel("length at request time (events)")
        ax.set_ylabel("share of requests")
        ax.set_title(f"sequence lengths; lifelong: {h['lifelong_source_events']:,} source-domain and "
                     f"{h['lifelong_target_events']:,} target-domain events per user", fontsize=8)
        ax.legend(fontsize=7, frameon=False)
        return _save(fig, out / "histories.png")


def signal_bars(s: dict, out: Path) -> str:
    sig = s["signals"]
    keys = ("moveline_ratio", "lifelong_ratio", "scenario_label_correlation")
    with plt.rc_context(_STYLE):
        fig, ax = plt.subplots(figsize=(5.6, 2.8))
        vals = [sig[k] for k in keys]
        ax.barh(np.arange(3), vals, color=["C0", "C1", "C2"])
        ax.axvline(1.0, color="k", lw=0.8)
        for i, v in enumerate(vals):
            ax.text(v, i, f" {v:.2f}", va="center", fontsize=8)
        ax.set_yticks(np.arange(3), keys)
        ax.set_title("seed-paper signals: ratios > 1 = present; correlation < 1 = scenarios differ", fontsize=8)
        return _save(fig, out / "signals.png")


def realism(s: dict, out: Path) -> str:
    """Each realism target's range (log scale) and the measured value: green inside, red outside."""
    rows = s.get("realism", [])
    with plt.rc_context(_STYLE):
        fig, ax = plt.subplots(figsize=(7.2, 0.32 * len(rows) + 1.2))
        for i, r in enumerate(rows):
            y = len(rows) - 1 - i
            ax.plot([r["lo"], r["hi"]], [y, y], "-", color="0.7", lw=6, solid_capstyle="butt")
            m = r["measured"]
            if np.isfinite(m) and m > 0:
                color = {True: "tab:green", False: "tab:red", None: "tab:blue"}[r["met"]]
                ax.plot([m], [y], "o", color=color)
        ax.set_xscale("log")
        ax.set_yticks(range(len(rows)), [r["name"] for r in reversed(rows)], fontsize=7)
        cal = s.get("calibration", "realistic")
        ax.set_title(f"realism targets (grey: range) and measured values ({cal} calibration)", fontsize=9)
        return _save(fig, out / "realism.png")


def draw_all(s: dict, out: Path) -> list[str]:
    return [realism(s, out), signal_bars(s, out), ctr_by_position(s, out), ctr_by_scenario(s, out), sessions(s, out),
            histories(s, out)]


def _table(rows: list[list], head: list[str]) -> str:
    th = "".join(f"<th>{html.escape(h)}</th>" for h in head)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><thead><tr>{th}</tr></thead><tbody>{body}</tbody></table>"


def _f(x, d=3) -> str:
    return "n/a" if x is None or (isinstance(x, float) and not np.isfinite(x)) else f"{x:.{d}f}"


def write_html(s: dict, pngs: list[str], out: Path) -> Path:
    sig, det = s["signals"], s["signals"]["detail"]
    sig_rows = [
        ["moveline_ratio (AMEN)", _f(sig["moveline_ratio"]), _f(det["moveline"]["observed_ratio"]),
         f"{det['moveline']['exposed']:,} / {det['moveline']['reference']:,}",
         "clicks on a category searched in the last hour vs same category, same scenario, same long-term affinity decile"],
        ["lifelong_ratio (LCN)", _f(sig["lifelong_ratio"]), _f(det["lifelong"]["observed_ratio"]),
         f"{det['lifelong']['exposed']:,} / {det['lifelong']['reference']:,}",
         "dormant categories (in the lifelong history, not in the recent sequence) vs categories in neither"],
        ["scenario_label_correlation (SSIM)", _f(sig["scenario_label_correlation"]), "", "",
         "mean correlation of true click logits of the same (user, item) pairs across scenario pairs"],
    ]
    sc_rows = [[n, v["surface"], _f(v["traffic_spec"], 2), _f(v["traffic_observed"], 2), f"{v['exposures']:,}",
                _f(v["ctr"], 4), _f(v["mean_p_click"], 4), _f(v["base_logit"], 2), _f(v["position_decay_spec"], 2),
                f"{_f(v['position_decay_fitted'], 2)} ± {_f(v['position_decay_se'], 2)}"]
               for n, v in s["scenarios"].items()]
    t, c, ss = s["totals"], s["catalog"], s["sessions"]
    rq = ss.get("return_time_h_quantiles", {})
    facts = [
        ["users (world / simulated)", f"{s['n_users']:,} / {s['sampled_users']:,}"],
        ["pre-period", f"{s['pre_period_days']:g} days, logging policy (popularity + epsilon)"],
        ["items", f"{c['shop_items']:,} shop (target) + {c['content_items']:,} content (source)"],
        ["categories", f"{c['categories']} under {c['parents']} parents; {c['categories_in_both_domains']} in both domains"],
        ["exposures / requests / sessions", f"{t['exposures']:,} / {t['requests']:,} / {t['sessions']:,}"],
        ["CTR / mean true P(click) / CVR", f"{_f(t['ctr'], 4)} / {_f(t['mean_p_click'], 4)} / {_f(t['cvr'], 3)}"],
        ["sessions per user per day", _f(ss["per_user_per_day"], 2)],
        ["return time (h): median [p10, p90]", f"{_f(rq.get('0.5'), 1)} [{_f(rq.get('0.1'), 1)}, {_f(rq.get('0.9'), 1)}]"],
    ]
    real_rows = [[r["name"], r["what"], _f(r["measured"], 4), f"{r['lo']:g} .. {r['hi']:g}",
                  {True: "met", False: "MISSED", None: "n/a (dense)"}[r["met"]], r["source"]]
                 for r in s.get("realism", [])]
    imgs = "".join(f'<figure><img src="{p}" alt="{p}"></figure>' for p in pngs)
    page = f"""<!doctype html><html lang="en"><head><meta charset="utf-8">
<title>world {html.escape(s['preset'])}</title>
<style>
body{{font-family:system-ui,-apple-system,Segoe UI,sans-serif;max-width:1000px;margin:2em auto;padding:0 1em;color:#222}}
h1{{font-size:1.5em;margin-bottom:.2em}} .sub{{color:#666;margin-top:0}}
table{{border-collapse:collapse;margin:.6em 0 1.4em;font-size:.86em}}
td,th{{border-bottom:1px solid #ddd;padding:.3em .7em;text-align:left}} th{{background:#f5f5f5}}
figure{{display:inline-block;margin:.4em;vertical-align:top}} img{{max-width:100%;border:1px solid #eee}}
code{{background:#f3f3f3;padding:0 .2em}}
</style></head><body>
<h1>World <code>{html.escape(s['preset'])}</code> (seed {s['seed']})</h1>
<p class="sub">{html.escape(s['description'])}</p>
<h2>Realism targets ({html.escape(s.get('calibration', 'realistic'))} calibration)</h2>
{_table(real_rows, ["target", "what", "measured", "range", "", "source"])}
<h2>Signals</h2>
{_table(sig_rows, ["signal", "value (true P(click))", "from realised clicks", "exposures (signal / reference)", "what it compares"])}
<h2>The world</h2>
{_table(facts, ["", ""])}
<h2>Scenarios</h2>
{_table(sc_rows, ["scenario", "surface", "traffic (preset)", "traffic (observed)", "exposures", "CTR", "mean P(click)", "base logit", "position decay (preset)", "position decay (fitted)"])}
<h2>Figures</h2>
{imgs}
<p class="sub">All numbers: <code>world.json</code>.</p>
</body></html>"""
    path = out / "index.html"
    path.write_text(page)
    return path


def write_json(s: dict, out: Path) -> Path:
    path = out / "world.json"
    path.write_text(json.dumps(_clean(s), indent=1))
    return path


def _clean(x):
    if isinstance(x, dict):
        return {k: _clean(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_clean(v) for v in x]
    if isinstance(x, (float, np.floating)):
        return float(x) if np.isfinite(x) else None
    if isinstance(x, np.integer):
        return int(x)
    return x
