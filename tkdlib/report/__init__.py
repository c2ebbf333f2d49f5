"""Run records → the book's tables, sentences and figures.

One module per job: `records` (loading and selecting runs), `tables`, `text` (generated
sentences), `figures`, `claims` (the paper's claims against the records), `saliency` (the saliency study's tables and findings), `variants` (the teacher-guided saliency variants and the decision between them), `regimes` (two training schedules side by side), `progress` (what a grid has left to run), and `style` (method names, order, colours, number formats). The names the
notebooks use are re-exported here, so a notebook reads ``report.results_table(records)``.
"""

from tkdlib.report.claims import claims_table
from tkdlib.report.figures import (
    ablation_plot, accuracy_vs_remaining, cost_vs_accuracy, layer_density, layer_density_comparison, layer_density_gap, layer_density_heatmap,
    overlap_heatmaps, regime_slopes,
)
from tkdlib.report.records import (
    OURS, comparison_sparsity, data_label, failed_runs, load_records, main_comparison, per_seed, planned_methods,
)
from tkdlib.report.progress import remaining_runs, remaining_text, runs_left
from tkdlib.report.regimes import compared_records, comparison_intro, regime_table, regime_text
from tkdlib.report.saliency import (
    emptied_layers, guiding_table, mask_accuracy_table, normalization_table, overlap_matrix, retraining_normalization_table,
    saliency_table, saliency_text, score_batches_table,
)
from tkdlib.report.variants import earned_variants, variant_decision_sentences, variant_decision_table
from tkdlib.report.style import METHOD_LABELS, label, readable
from tkdlib.report.tables import (
    PAIRED_COLUMNS, ablation_changes, ablation_matrix, ablation_table, benchmark_machine, benchmark_table, compute_summary,
    efficiency_table, phase_costs, phase_times, results_table, run_summary, runs_table, switch_effects, thinnest_layers,
)
from tkdlib.report.text import (
    ablation_text, by_sparsity_text, figure_source, headline, headline_text, iterative_cost_text, page_caption,
)

__all__ = [
    "METHOD_LABELS", "OURS", "PAIRED_COLUMNS", "ablation_changes", "ablation_matrix", "ablation_plot", "ablation_table", "ablation_text",
    "accuracy_vs_remaining", "cost_vs_accuracy", "benchmark_machine", "benchmark_table", "by_sparsity_text", "claims_table", "comparison_sparsity",
    "compute_summary", "data_label", "earned_variants", "emptied_layers", "guiding_table", "layer_density_gap", "mask_accuracy_table", "normalization_table",
    "overlap_heatmaps", "overlap_matrix", "retraining_normalization_table", "saliency_table", "saliency_text", "score_batches_table", "efficiency_table", "failed_runs", "figure_source", "headline", "headline_text",
    "iterative_cost_text", "label", "layer_density", "layer_density_comparison", "layer_density_heatmap", "load_records", "main_comparison", "page_caption",
    "compared_records", "comparison_intro", "per_seed", "phase_costs", "phase_times", "planned_methods", "readable", "regime_slopes", "regime_table", "regime_text", "remaining_runs", "remaining_text", "results_table", "runs_left", "run_summary", "runs_table",
    "switch_effects", "thinnest_layers", "variant_decision_sentences", "variant_decision_table",
]
