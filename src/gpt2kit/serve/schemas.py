"""Request and response bodies of the HTTP API (pydantic models).

The completion models follow OpenAI's `/v1/completions` wire format field for field, so
the official `openai` client talks to the server unchanged. Fields OpenAI defines but
this server does not implement (`logprobs`, `echo`, `suffix`, `best_of > n`) are refused
with a 400 naming the field rather than silently ignored. `top_k` and
`repetition_penalty` are extensions (as in vLLM), off by default.

Task endpoints (`/v1/classify`, `/v1/tag`, ...) take `input` as one item or a list and
always answer with a list in `data`, one entry per item, in order.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from .errors import APIError

PromptType = str | list[str] | list[int] | list[list[int]]

SEED_MAX = 2**64 - 1  # what torch.Generator.manual_seed takes
# Below this a temperature only overflows the logits (NaN probabilities); 0 is greedy.
MIN_TEMPERATURE = 1e-5


def _find_surrogate(value: Any, path: str) -> str | None:
    """The path of the first string holding a lone surrogate (not UTF-8 encodable)."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return path or "body"
        return None
    if isinstance(value, dict):
        items: Any = value.items()
    elif isinstance(value, list):
        items = enumerate(value)
    else:
        return None
    for k, v in items:
        found = _find_surrogate(v, f"{path}.{k}" if path else str(k))
        if found:
            return found
    return None


class _Request(BaseModel):
    # Unknown fields are accepted and ignored (OpenAI clients send `user`, `extra_body`
    # keys...), but every known field is type-checked strictly enough to name it on error.
    # NaN and infinity are refused in every float field.
    model_config = ConfigDict(extra="ignore", allow_inf_nan=False)

    @model_validator(mode="before")
    @classmethod
    def _no_lone_surrogates(cls, data: Any) -> Any:
        # JSON may escape a lone surrogate ("\ud800"); Python then holds a string no
        # tokenizer can encode. Refuse it here, naming the field, instead of failing deep
        # inside the worker. An APIError passes through pydantic untouched.
        where = _find_surrogate(data, "")
        if where:
            raise APIError(
                400,
                f"{where}: text holds a lone UTF-16 surrogate, which is not valid Unicode "
                "text; send the character as a proper surrogate pair or UTF-8",
                param=where,
                code="invalid_unicode",
            )
        return data


class _Sampling(_Request):
    """The sampling fields completions and chat share, each bounded to what decodes sanely."""

    temperature: float | None = Field(default=1.0, ge=0.0, le=2.0)
    top_p: float | None = Field(default=1.0, gt=0.0, le=1.0)
    top_k: int | None = Field(default=None, ge=0, le=2**31 - 1)
    n: int | None = Field(default=1, ge=1, le=16)
    seed: int | None = Field(default=None, ge=0, le=SEED_MAX)
    presence_penalty: float | None = Field(default=0.0, ge=-2.0, le=2.0)
    frequency_penalty: float | None = Field(default=0.0, ge=-2.0, le=2.0)
    # transformers' rule (> 0) lets 5e-324 through, which divides logits into NaN.
    repetition_penalty: float | None = Field(default=None, ge=0.01, le=100.0)

    @field_validator("temperature")
    @classmethod
    def _not_denormal(cls, v: float | None) -> float | None:
        if v is not None and 0 < v < MIN_TEMPERATURE:
            raise ValueError(
                f"must be 0 (greedy) or at least {MIN_TEMPERATURE:g}; smaller values overflow "
                "the logits"
            )
        return v


class CompletionRequest(_Sampling):
    """Body of `POST /v1/completions` (OpenAI's fields, plus `top_k` / `repetition_penalty`)."""

    model: str | None = None
    prompt: PromptType = Field(default="<|endoftext|>")
    max_tokens: int | None = Field(default=16, ge=1)
    best_of: int | None = Field(default=None, ge=1)
    stop: str | list[str] | None = None
    stream: bool | None = False
    stream_options: dict[str, Any] | None = None
    logprobs: int | None = None
    echo: bool | None = False
    suffix: str | None = None
    user: str | None = None


class CompletionChoice(BaseModel):
    text: str
    index: int
    logprobs: None = None
    finish_reason: Literal["stop", "length"] | None = None


class Usage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class CompletionResponse(BaseModel):
    id: str
    object: Literal["text_completion"] = "text_completion"
    created: int
    model: str
    choices: list[CompletionChoice]
    usage: Usage | None = None


class ModelCard(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str = "gpt2kit"
    tasks: list[str] = Field(default_factory=list)


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]


class ClassifyRequest(_Request):
    """`POST /v1/classify`: label each text (sequence / text / document classification)."""

    model: str | None = None
    input: str | list[str]
    top_k: int | None = Field(default=None, ge=1)


class TagRequest(_Request):
    """`POST /v1/tag`: label each word/token of each text (token classification)."""

    model: str | None = None
    input: str | list[str]


class AnswerItem(BaseModel):
    question: str
    context: str


class AnswerRequest(_Request):
    """`POST /v1/answer`: extract an answer span from `context` (question answering)."""

    model: str | None = None
    input: AnswerItem | list[AnswerItem]


class ChooseItem(BaseModel):
    prompt: str = ""
    choices: list[str] = Field(min_length=2)


class ChooseRequest(_Request):
    """`POST /v1/choose`: pick the best of `choices` (multiple choice)."""

    model: str | None = None
    input: ChooseItem | list[ChooseItem]


class ScoreRequest(_Request):
    """`POST /v1/score`: log-likelihood of each text under the language model."""

    model: str | None = None
    input: str | list[str]


class EmbedRequest(_Request):
    """`POST /v1/embed`: one vector per text (mean of the backbone's last hidden states)."""

    model: str | None = None
    input: str | list[str]


class TaskResponse(BaseModel):
    object: Literal["list"] = "list"
    model: str
    data: list[Any]
    usage: dict[str, int] | None = None
