"""Before/after check of the pipeline refactor (issue #12 item 7) on a 60-user ml-100k slice.

Run once with the old code and once with the new, e.g.::

    git worktree add /tmp/old ee11bbd
    cd /tmp/old && REF_TESTS=/tmp/old/tests REF_WARM=1 PYTHONPATH=/tmp/old python <this file> before.json
    cd /tmp && EMULATE_OLD_RNG=1 REF_WARM=1 python <this file> after.json

REF_WARM=1 runs every row twice on one cache and keeps the second (warm) run; EMULATE_OLD_RNG=1
makes the new code draw one untrained RQ-VAE before the model, as the old constructor did on a
cache hit, so the remaining differences are the refactor's own. Results: results/refactor_check/.
"""
import json, sys, os, tempfile
from pathlib import Path
import torch
torch.set_num_threads(1)
sys.path.insert(0, os.environ.get("REF_TESTS", os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests")))
import recbole_flexcode
from conftest import write_ml100k_slice, tiny_config
from recbole_flexcode.quick_start import run

out = sys.argv[1]
root = Path(tempfile.mkdtemp())
write_ml100k_slice(root)
os.chdir(root)
flex = dict(cache_dir=str(root / "cache"), token_budget=3, codebook_size=16, code_dim=16, rqvae_hidden_sizes=[32],
            rqvae_epochs=15, rqvae_batch_size=256, align_proj_size=16, cf_epochs=2, cf_hidden_size=16, cf_inner_size=32,
            cf_n_layers=1, router_hidden_size=8, hidden_size=16, inner_size=32, n_encoder_layers=1, n_decoder_layers=1,
            dropout_prob=0.1, beam_size=20, train_batch_size=128, epochs=3, checkpoint_dir=str(root / "saved"))
rows = {
    "FlexCode-full": ("FlexCode", {}),
    "FlexCode-fix": ("FlexCode", {"variant": "fix"}),
    "FlexCode-semantic_only": ("FlexCode", {"variant": "semantic_only"}),
    "FlexCode-decoupled": ("FlexCode", {"router_mode": "decoupled", "router_warmup_steps": 4}),
    "FlexCode-item_emb": ("FlexCode", {"history_item_embedding": True}),
    "FlexCode-exact": ("FlexCode", {"decode_mode": "exact"}),
}
solid = dict(cache_dir=str(root / "cache"), cf_epochs=2, cf_hidden_size=16, cf_inner_size=32, cf_n_layers=1, rqvae_epochs=15,
             rqvae_hidden_sizes=[32], hidden_size=16, epochs=3, checkpoint_dir=str(root / "saved"), train_batch_size=128)
results = {}
if os.environ.get("EMULATE_OLD_RNG") == "1":
    # The old models built an untrained RQ-VAE (FlexCode: the dual pair) on every cache hit before
    # drawing their own weights; consume the random stream the same way to compare everything else.
    from recbole_flexcode.model import flexcode as fc, solid as so
    from recbole_flexcode.tokenizer.dual import DualCodebookTokenizer
    from recbole_flexcode.tokenizer.rqvae import RQVAE
    build = fc.FlexCode._build
    def _build(self, tok, unc):
        DualCodebookTokenizer(384, 16, 3, 16, 16, [32], 0.25, 0.1, 0.1, 16)
        return build(self, tok, unc)
    fc.FlexCode._build = _build
    req = so.require_sampled_negatives
    def _req(config, name):
        RQVAE(400, 32, 1, 64, [32], 0.25)
        return req(config, name)
    so.require_sampled_negatives = _req
warm = os.environ.get("REF_WARM") == "1"
only = sys.argv[2].split(",") if len(sys.argv) > 2 else None
for name, (model, extra) in list(rows.items()) + [("SOLID", ("SOLID", {}))]:
    if only and name not in only:
        continue
    cfg = tiny_config(root, **(solid if model == "SOLID" else flex), **extra)
    r = run(model, "ml-tiny", config_dict=cfg, result_file=str(root / f"{name}.json"), command="ref")
    if warm:  # second run: every stage cached, so the model starts from init_seed alone
        r = run(model, "ml-tiny", config_dict=cfg, result_file=str(root / f"{name}.json"), command="ref")
    results[name] = {"valid": r["best_valid_result"], "test": r["test_result"], "curve": r["training"]["valid_curve"]}
    print(name, results[name], flush=True)
Path(out).write_text(json.dumps(results, indent=1))
