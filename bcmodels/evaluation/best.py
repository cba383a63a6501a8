"""The cross-validation benchmark's best model (docs/model_card.md, docs/results.md): the model `make predict`
classifies with when none is named, and the one the recipe search tries recipes for (docs/search.md). The main
run trains it too (train.models in params.yaml)."""

DEFAULT_MODEL = "mobilenet_v2"
