"""Names of the reconstruction chains the benchmark compares (no heavy imports: the CLI's
defaults read them)."""

CLUSTERINGS = ("network", "clue", "truth_assignment", "perfect")
PFS = ("mlpf", "rule_pf")
PF_LEVEL_CHAINS = (
    "network+mlpf", "network+rule_pf", "truth_assignment+mlpf", "truth_assignment+rule_pf",
    "perfect+mlpf", "perfect+rule_pf",
)  # fmt: skip
ALL_CHAINS = ("clue+mlpf", "clue+rule_pf", *PF_LEVEL_CHAINS)
