"""The local classifier, trained at start-up from every specialist's routing examples.

Word and character n-gram TF-IDF with logistic regression: cheap, fast enough to classify in the
router without an LLM for most tickets, and robust to typos through the character n-grams.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import FeatureUnion, Pipeline

from app.registry import specialists


@dataclass(frozen=True)
class Prediction:
    specialist: str
    confidence: float
    # Probability per specialist, for callers that weigh a conversation's current specialist.
    scores: dict[str, float]


def _pipeline() -> Pipeline:
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

    def predict(self, text: str) -> Prediction:
        probabilities = self._pipeline.predict_proba([text])[0]
        classes = list(self._pipeline.classes_)
        scores = {str(label): float(p) for label, p in zip(classes, probabilities, strict=True)}
        best = max(scores, key=scores.__getitem__)
        return Prediction(best, scores[best], scores)


@lru_cache(maxsize=1)
def classifier() -> Classifier:
    return Classifier({name: spec.routing_examples for name, spec in specialists().items()})
