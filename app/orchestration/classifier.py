"""The local classifier, trained at start-up from every specialist's routing examples.

Word and character n-gram TF-IDF with logistic regression: cheap, fast enough to classify in the
router without an LLM for most tickets, and robust to typos through the character n-grams.
scikit-learn is the `classifier` extra: without it (a web process that only submits, or a lean
router) routing runs on rules and the cheap LLM, said once in the log, never silently.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Protocol

from app.orchestration.registry import specialists

log = logging.getLogger(__name__)
EXTRA_HINT = "pip install 'switchboard[classifier]'"


@dataclass(frozen=True)
class Prediction:
    specialist: str
    confidence: float
    # Probability per specialist, for callers that weigh a conversation's current specialist.
    scores: dict[str, float]


class Predictor(Protocol):
    def predict(self, text: str) -> Prediction: ...


def _pipeline() -> Any:
    # Imported here: scikit-learn is an extra, and this is the only code that needs it.
    from sklearn.feature_extraction.text import TfidfVectorizer  # noqa: PLC0415
    from sklearn.linear_model import LogisticRegression  # noqa: PLC0415
    from sklearn.pipeline import FeatureUnion, Pipeline  # noqa: PLC0415

    features = FeatureUnion(
        [
            ("words", TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, strip_accents="unicode")),
            ("chars", TfidfVectorizer(analyzer="char_wb", ngram_range=(3, 5), sublinear_tf=True)),
        ]
    )
    return Pipeline([("features", features), ("model", LogisticRegression(C=20.0, max_iter=2000))])


class Classifier:
    def __init__(self, examples: dict[str, tuple[str, ...]]) -> None:
        texts = [text for examples_ in examples.values() for text in examples_]
        labels = [name for name, examples_ in examples.items() for _ in examples_]
        self.labels = sorted(examples)
        self._pipeline = _pipeline().fit(texts, labels)
        # The fitted steps, for predict: the pipeline's own predict_proba spends about a third of
        # the router's classifier time on per-call machinery one text never needs (joblib dispatch
        # of the feature union, metadata routing, parameter and finiteness validation).
        self._features = [step for _, step in self._pipeline.named_steps["features"].transformer_list]
        self._model = self._pipeline.named_steps["model"]
        self._classes = [str(label) for label in self._model.classes_]

    def predict(self, text: str) -> Prediction:
        from scipy.sparse import hstack  # noqa: PLC0415 - scikit-learn's dependency, an extra like it
        from sklearn import config_context  # noqa: PLC0415

        # What the pipeline computes (the feature union stacks its transformers' outputs side by
        # side), minus the checks: the input is always one string, its features always finite.
        with config_context(assume_finite=True, skip_parameter_validation=True):
            features = hstack([step.transform([text]) for step in self._features]).tocsr()
            probabilities = self._model.predict_proba(features)[0]
        scores = {label: float(p) for label, p in zip(self._classes, probabilities, strict=True)}
        best = max(scores, key=scores.__getitem__)
        return Prediction(best, scores[best], scores)


class OnlyChoice:
    """One specialist enabled: every request goes to it (a classifier needs two classes)."""

    def __init__(self, name: str) -> None:
        self.name = name

    def predict(self, text: str) -> Prediction:
        return Prediction(self.name, 1.0, {self.name: 1.0})


class Unsure:
    """No scikit-learn: never confident, so rules, then the cheap LLM, then the fallback decide."""

    def __init__(self, names: list[str]) -> None:
        self.names = names

    def predict(self, text: str) -> Prediction:
        return Prediction(self.names[0], 0.0, dict.fromkeys(self.names, 0.0))


def build(examples: dict[str, tuple[str, ...]]) -> Predictor:
    if len(examples) == 1:
        return OnlyChoice(next(iter(examples)))
    try:
        return Classifier(examples)
    except ModuleNotFoundError as exc:
        if exc.name is None or not exc.name.startswith("sklearn"):
            raise
        log.warning(
            "scikit-learn is not installed, so there is no local classifier: routing uses rules, "
            "then the cheap LLM for every other request (%s)",
            EXTRA_HINT,
        )
        return Unsure(sorted(examples))


@lru_cache(maxsize=1)
def classifier() -> Predictor:
    return build({name: spec.routing_examples for name, spec in specialists().items()})
