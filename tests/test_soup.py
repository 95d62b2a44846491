"""The recipes on plain tensors and tiny random models (hf_soup.recipes: no files involved)."""

import pytest
import torch

from hf_soup.recipes.averaging import AverageView, RunningSum, weighted_average
from hf_soup.recipes.catalog import CATALOG
from hf_soup.recipes.greedy import greedy_soup
from hf_soup.recipes.learned import learned_soup
from hf_soup.recipes.uniform import average_checkpoints, uniform_soup


def _state(seed, dtype=torch.float32):
    generator = torch.Generator().manual_seed(seed)
    return {
        "w": torch.randn(4, 3, generator=generator).to(dtype),
        "b": torch.randn(3, generator=generator).to(dtype),
        "steps": torch.tensor([7 + seed], dtype=torch.int64),  # a non-float buffer
    }


def test_registry_names_the_recipes():
    assert set(CATALOG) == {"uniform", "greedy", "learned", "average-last", "model-stock", "filtered-uniform"}


def test_uniform_of_identical_models_is_the_identity():
    state = _state(0)
    soup = uniform_soup([state, {k: v.clone() for k, v in state.items()}, state])
    for name in state:
        assert torch.equal(soup[name], state[name])


def test_average_of_two_known_state_dicts_is_exact():
    a = {"w": torch.tensor([1.0, 2.0, -3.0, 0.25]), "n": torch.tensor([1, 2])}
    b = {"w": torch.tensor([3.0, 4.0, 3.0, 0.75]), "n": torch.tensor([5, 6])}
    soup = uniform_soup([a, b])
    assert torch.equal(soup["w"], torch.tensor([2.0, 3.0, 0.0, 0.5]))
    assert torch.equal(soup["n"], a["n"])  # non-float: copied from the first ingredient, not averaged
    weighted = weighted_average([a, b], [3, 1])
    assert torch.equal(weighted["w"], torch.tensor([1.5, 2.5, -1.5, 0.375]))


def test_fp16_ingredients_stay_fp16_but_accumulate_in_float32():
    # θ₀ = 0, then 2048 and four 1s: in fp16, 2048 + 1 rounds back to 2048 (its spacing there is 2),
    # so an fp16 accumulator loses every 1 and gives 2048/6 -> 341.25; float32 gives 2052/6 = 342.
    values = [0.0, 2048.0, 1.0, 1.0, 1.0, 1.0]
    states = [{"w": torch.full((3,), value, dtype=torch.float16)} for value in values]
    expected = torch.full((3,), 342.0, dtype=torch.float16)
    greedy = greedy_soup(states, [6, 5, 4, 3, 2, 1], evaluate=lambda s: 9.0)  # keeps all, in this order
    for soup in (uniform_soup(states), greedy.state):
        assert soup["w"].dtype == torch.float16
        assert torch.equal(soup["w"], expected), soup["w"]


def test_checkpoint_averaging_uses_float64():
    a = {"w": torch.tensor([1.0, 1e-8], dtype=torch.float64)}
    b = {"w": torch.tensor([1.0 + 2**-40, 3e-8], dtype=torch.float64)}
    c = {"w": torch.tensor([1.0, 2e-8], dtype=torch.float64)}
    soup = average_checkpoints([a, b, c])
    assert soup["w"].dtype == torch.float64
    expected = (a["w"] + b["w"] + c["w"]) / 3
    assert torch.allclose(soup["w"], expected, rtol=0, atol=1e-15)


@pytest.mark.parametrize("model_name", ["bert-mlm", "t5"])
def test_tied_weights_are_averaged_once_and_stay_tied(model_name):
    from transformers import BertConfig, BertForMaskedLM, T5Config, T5ForConditionalGeneration

    def build(seed):
        torch.manual_seed(seed)
        if model_name == "bert-mlm":
            config = BertConfig(
                vocab_size=50, hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32
            )
            return BertForMaskedLM(config)
        config = T5Config(vocab_size=50, d_model=16, d_kv=4, d_ff=32, num_layers=1, num_heads=2)
        return T5ForConditionalGeneration(config)

    models = [build(seed) for seed in (0, 1)]
    states = [model.state_dict() for model in models]
    tied = ("cls.predictions.decoder.weight", "bert.embeddings.word_embeddings.weight")
    if model_name == "t5":
        tied = ("lm_head.weight", "shared.weight")
    assert states[0][tied[0]].data_ptr() == states[0][tied[1]].data_ptr()
    for soup in (uniform_soup(states), greedy_soup(states, [1.0, 0.5], evaluate=lambda s: 1.0).state):
        assert soup[tied[0]] is soup[tied[1]]
        assert torch.allclose(soup[tied[1]], (states[0][tied[1]] + states[1][tied[1]]) / 2)
        fresh = build(2)
        fresh.load_state_dict(soup)
        assert fresh.get_output_embeddings().weight is fresh.get_input_embeddings().weight


def test_running_sum_view_equals_materialised_mean():
    states = [_state(seed) for seed in range(3)]
    running = RunningSum(states[0])
    view = running.mean_with(states[1])
    expected = uniform_soup(states[:2])
    for name in expected:
        assert torch.equal(view[name], expected[name])
    running.add(states[1])
    running.add(states[2])
    mean = running.mean()
    expected = uniform_soup(states)  # same arithmetic: a greedy soup that keeps all is the uniform soup
    for name in expected:
        assert torch.equal(mean[name], expected[name])


def _scripted_greedy(scores, script, strict=False):
    """Ingredient i is the 2-vector (i, i²); `script` lists, per evaluation, the members the soup
    must contain (checked against the state the scorer receives) and the score to return."""
    states = [{"x": torch.tensor([float(i), float(i * i)], dtype=torch.float64)} for i in range(len(scores))]
    calls = iter(script)

    def evaluate(state):
        members, score = next(calls)
        expected = torch.stack([states[i]["x"] for i in members]).mean(dim=0)
        assert torch.allclose(state["x"], expected), f"soup should be {members}"
        return score

    result = greedy_soup(states, scores, evaluate, strict=strict, accumulate_dtype=torch.float64)
    assert next(calls, None) is None, "one evaluation per candidate after the first"
    return result


def test_greedy_follows_recipe_1_step_by_step():
    # held-out order: 2 (0.9), 0 (0.8), 3 (0.7), 1 (0.6)
    script = [
        ([2, 0], 0.95),  # improves -> kept
        ([2, 0, 3], 0.90),  # drops -> rejected
        ([2, 0, 1], 0.95),  # equal -> kept (non-strict)
    ]
    result = _scripted_greedy([0.8, 0.6, 0.9, 0.7], script)
    assert result.order == [2, 0, 3, 1]
    assert [(s.step, s.index, s.score, s.accepted, s.soup_size) for s in result.trace] == [
        (1, 2, 0.9, True, 1),  # the first ingredient is the initial soup, with its own score
        (2, 0, 0.95, True, 2),
        (3, 3, 0.90, False, 2),
        (4, 1, 0.95, True, 3),
    ]
    assert result.kept == [2, 0, 1] and result.score == 0.95
    assert torch.allclose(result.state["x"], torch.tensor([1.0, 5 / 3], dtype=torch.float64))


def test_greedy_strict_needs_an_increase():
    script = [([2, 0], 0.95), ([2, 0, 3], 0.95), ([2, 0, 1], 0.96)]
    result = _scripted_greedy([0.8, 0.6, 0.9, 0.7], script, strict=True)
    assert [s.accepted for s in result.trace] == [True, True, False, True]
    assert result.kept == [2, 0, 1]


def test_greedy_tied_heldout_scores_keep_the_given_order():
    states = [{"x": torch.tensor([float(i)])} for i in range(3)]
    result = greedy_soup(states, [0.5, 0.5, 0.5], evaluate=lambda s: 0.5)
    assert result.order == [0, 1, 2] and result.kept == [0, 1, 2]
    strict = greedy_soup(states, [0.5, 0.5, 0.5], evaluate=lambda s: 0.5, strict=True)
    assert strict.kept == [0]


def test_greedy_key_selects_on_loss():
    states = [{"x": torch.tensor([float(i)])} for i in range(2)]
    result = greedy_soup(states, [-0.5, -0.6], evaluate=lambda s: {"loss": 0.55}, key=lambda metrics: -metrics["loss"])
    assert not result.trace[1].accepted and result.trace[1].evaluation == {"loss": 0.55}


@pytest.mark.parametrize("granularity", ["model", "layer"])
def test_learned_soup_finds_the_good_ingredient(granularity):
    torch.manual_seed(0)
    truth = torch.nn.Linear(4, 2)
    good = {k: v.detach().clone() for k, v in truth.state_dict().items()}
    bad = {k: torch.randn_like(v) * 3 for k, v in good.items()}
    inputs = torch.randn(64, 4)
    batches = [(inputs[i : i + 16], truth(inputs[i : i + 16]).detach()) for i in range(0, 64, 16)]
    model = torch.nn.Linear(4, 2)
    result = learned_soup(
        [bad, good],
        model,
        batches,
        loss_fn=lambda out, batch: torch.nn.functional.mse_loss(out, batch[1]),
        forward=lambda module, batch: module(batch[0]),
        granularity=granularity,
        epochs=30,
        lr=0.2,
    )
    expected_shape = (2,) if granularity == "model" else (2, 2)
    assert result.coefficients.shape == expected_shape
    assert (result.coefficients[1] > 0.9).all()
    assert result.losses[-1] < result.losses[0]
    mixed = result.coefficients if granularity == "model" else result.coefficients[:, 0]
    assert torch.allclose(result.state["weight"], mixed[0] * bad["weight"] + mixed[1] * good["weight"], atol=1e-6)


def test_learned_soup_keeps_fp16_ingredients_fp16():
    a = {"weight": torch.ones(2, 2, dtype=torch.float16), "bias": torch.zeros(2, dtype=torch.float16)}
    b = {"weight": torch.full((2, 2), 3.0, dtype=torch.float16), "bias": torch.ones(2, dtype=torch.float16)}
    batch = (torch.ones(1, 2), torch.zeros(1, 2))
    result = learned_soup(
        [a, b],
        torch.nn.Linear(2, 2),
        [batch],
        loss_fn=lambda out, b: out.pow(2).mean(),
        forward=lambda m, b: m(b[0]),
        epochs=0,
    )
    assert result.state["weight"].dtype == torch.float16
    assert torch.equal(result.state["weight"], torch.full((2, 2), 2.0, dtype=torch.float16))


def test_mismatched_names_are_refused():
    with pytest.raises(ValueError, match="different tensor names"):
        uniform_soup([{"a": torch.zeros(1)}, {"b": torch.zeros(1)}])


@pytest.mark.parametrize(
    "device",
    [
        "meta",  # no data, but every op checks devices: a CPU accumulator fails here as on CUDA
        pytest.param(
            "cuda",
            marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine"),
        ),
    ],
)
def test_recipes_accumulate_on_the_tensors_device(device):
    cpu = [
        {"weight": torch.randn(4, 3, generator=torch.Generator().manual_seed(s)), "bias": torch.randn(4)}
        for s in (1, 2)
    ]
    states = [{name: tensor.to(device) for name, tensor in state.items()} for state in cpu]
    evaluations = []

    def evaluate(candidate):
        evaluations.append({name: candidate[name].device.type for name in candidate})
        return 1.0

    module = torch.nn.Linear(3, 4).to(device)
    batches = [(torch.randn(8, 3, device=device), torch.randn(8, 4, device=device))]
    soups = {
        "uniform": uniform_soup(states),
        "average-last": average_checkpoints(states),
        "greedy": greedy_soup(states, [1.0, 0.5], evaluate=evaluate).state,
        "learned": learned_soup(
            states,
            module,
            batches,
            loss_fn=lambda out, batch: torch.nn.functional.mse_loss(out, batch[1]),
            forward=lambda m, batch: m(batch[0]),
            epochs=0 if device == "meta" else 2,
            device=device,
        ).state,
    }
    assert evaluations == [{"weight": device, "bias": device}]  # the greedy candidate view too
    for recipe, soup in soups.items():
        assert {tensor.device.type for tensor in soup.values()} == {device}, recipe
    if device == "cuda":  # same numbers as on the CPU
        on_cpu = uniform_soup(cpu)
        assert all(torch.allclose(soups["uniform"][k].cpu(), on_cpu[k], atol=1e-6) for k in on_cpu)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_lazy_soups_write_into_a_buffer_exactly_what_they_read(dtype):
    """read_into (how the scorer loads a lazy soup, with no tensor-sized temporary) gives bitwise the
    values of reading the tensor, in chunks smaller than the tensors."""
    states = [{k: v.to(dtype) for k, v in _state(seed).items()} for seed in range(3)]
    view = AverageView(states, chunk_size=5)
    running = RunningSum(states[0])
    running.add(states[1], chunk_size=5)
    assert torch.equal(running.mean_with()["w"], uniform_soup(states[:2])["w"])  # chunked add, same sum
    for lazy in (view, running.mean_with(), running.mean_with(states[2])):
        for name in lazy:
            out = (
                torch.full(lazy[name].shape, -1.0)
                if lazy[name].is_floating_point()
                else torch.zeros(1, dtype=torch.int64)
            )
            lazy.read_into(name, out)
            assert torch.equal(out, lazy[name].to(out.dtype)), name
    with pytest.raises(ValueError, match="shape"):
        view.read_into("w", torch.empty(3, 4))


def test_greedy_evaluates_no_candidate_it_is_told_the_score_of():
    states = [_state(seed) for seed in range(4)]
    seen = []

    def evaluate(state):
        seen.append(state["w"].clone())
        return float(state["w"].sum())

    plain = greedy_soup(states, [4, 3, 2, 1], evaluate=evaluate)
    evaluated = list(seen)
    seen.clear()
    # the first two candidate soups (additions 0+1, then 0+1+2 or 0+2) are known: only the last is run
    known = {(0, 1): plain.trace[1].evaluation}
    second = (0, 1, 2) if plain.trace[1].accepted else (0, 2)
    known[second] = plain.trace[2].evaluation
    told = greedy_soup(states, [4, 3, 2, 1], evaluate=evaluate, known=known.get)
    assert len(evaluated) == 3 and len(seen) == 1
    assert torch.equal(seen[0], evaluated[2])  # the candidate no one knew, the very same weights
    assert told.kept == plain.kept and [s.evaluation for s in told.trace] == [s.evaluation for s in plain.trace]
    for name in plain.state:
        assert torch.equal(told.state[name], plain.state[name])


def test_a_greedy_soup_of_one_ingredient_is_bitwise_that_ingredient():
    states = [_state(seed) for seed in range(3)]
    states[0]["w"] = states[0]["w"].to(torch.bfloat16)
    states[1]["w"] = states[1]["w"].to(torch.bfloat16)
    states[2]["w"] = states[2]["w"].to(torch.bfloat16)
    result = greedy_soup(states, [1.0, 3.0, 2.0], evaluate=lambda state: 0.0)  # every candidate worse
    assert result.kept == [1]
    for name in states[1]:
        assert torch.equal(result.state[name], states[1][name]) and result.state[name].dtype == states[1][name].dtype


class _CountingScorer:
    """Scores a state by the sum of its weights (a stand-in for a forward pass), counting passes."""

    def __init__(self):
        self.passes = {"heldout": 0, "test": 0}
        self.state = None

    def load_state(self, state):
        self.state = {name: tensor.clone() for name, tensor in state.items()}

    def score(self, split):
        import numpy as np

        from hf_soup.scoring import ScoreResult

        self.passes[split] += 1
        total = float(sum(tensor.double().sum() for tensor in self.state.values() if tensor.is_floating_point()))
        score = total if split == "heldout" else -total
        return ScoreResult(np.zeros((1, 2), np.float32), {"primary": score, "loss": -score})

    def score_state(self, state, split):
        self.load_state(state)
        return self.score(split)


def test_a_second_greedy_run_on_the_same_merge_scores_nothing_it_already_built():
    from types import SimpleNamespace

    from hf_soup.recipes import greedy
    from hf_soup.recipes.context import IngredientScores, RecipeContext

    class Named(dict):  # a state dict with the name a Checkpoint carries
        name = ""

    states = []
    for i, value in enumerate((4.0, 1.0, 3.0, 2.0)):
        states.append(Named(w=torch.full((3,), value)))
        states[-1].name = f"ingredient-{i}"
    scorer = _CountingScorer()
    scored = [{split: scorer.score_state(state, split) for split in ("heldout", "test")} for state in states]
    scorer.passes = {"heldout": 0, "test": 0}
    ingredients = IngredientScores(scored, [s["heldout"].metrics["primary"] for s in scored])
    args = SimpleNamespace(criterion="metric", strict=False)
    context = RecipeContext(args, states, scorer=scorer, ingredients=ingredients)
    context.remember_ingredients()
    first = greedy.run(context)
    assert scorer.passes == {"heldout": 3, "test": 1 if len(first.row["kept"]) > 1 else 0}
    scorer.passes = {"heldout": 0, "test": 0}
    again = greedy.run(context)  # e.g. the greedy soup on the other criterion, when it ranks alike
    assert scorer.passes == {"heldout": 0, "test": 0}
    assert again.weights == first.weights
    assert again.scores["test"].metrics == first.scores["test"].metrics
