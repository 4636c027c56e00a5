"""Request and response bodies of the HTTP API (pydantic models).

The completion, chat and embedding models follow OpenAI's wire format field for field,
so the official `openai` client talks to the server unchanged. A field OpenAI defines but
this server cannot honour (`suffix`: GPT-2 has no infilling; chat `tools`) is refused
with a 400 naming the field rather than silently ignored. `top_k`,
`repetition_penalty`, `regex` and `grammar` are extensions (as in vLLM), off by default.

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


class _Generation(_Sampling):
    """Fields completions and chat share beyond sampling: bias and structured output."""

    model: str | None = None
    stop: str | list[str] | None = None
    stream: bool | None = False
    stream_options: dict[str, Any] | None = None
    # OpenAI: token id (as a string key) -> bias in [-100, 100], added to the logits.
    logit_bias: dict[str, float] | None = None
    # {"type": "text" | "json_object" | "json_schema", "json_schema": {"name", "schema"}}
    response_format: dict[str, Any] | None = None
    # Extensions (as in vLLM's guided decoding): a regex or a Lark grammar the output matches.
    regex: str | None = None
    grammar: str | None = None
    user: str | None = None

    @field_validator("logit_bias")
    @classmethod
    def _bias(cls, v: dict[str, float] | None) -> dict[str, float] | None:
        for key, value in (v or {}).items():
            if not key.lstrip("-").isdigit():
                raise ValueError(f"keys are token ids, got {key!r}")
            if not -100 <= value <= 100:
                raise ValueError(f"values must be in [-100, 100], got {value} for {key}")
        return v


class CompletionRequest(_Generation):
    """Body of `POST /v1/completions` (OpenAI's fields, plus `top_k` / `repetition_penalty`)."""

    prompt: PromptType = Field(default="<|endoftext|>")
    # 0 generates nothing: with `echo`, the prompt is only scored (lm-eval's log-likelihood).
    max_tokens: int | None = Field(default=16, ge=0)
    best_of: int | None = Field(default=None, ge=1, le=16)
    logprobs: int | None = Field(default=None, ge=0, le=5)
    echo: bool | None = False
    suffix: str | None = None


class LegacyLogprobs(BaseModel):
    tokens: list[str]
    token_logprobs: list[float | None]
    top_logprobs: list[dict[str, float] | None]
    text_offset: list[int]


class CompletionChoice(BaseModel):
    text: str
    index: int
    logprobs: LegacyLogprobs | None = None
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


# -- chat ------------------------------------------------------------------------------------
class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="allow")

    role: Literal["system", "developer", "user", "assistant", "tool"]
    # A string, or OpenAI's content parts of which only {"type": "text"} are read.
    content: str | list[dict[str, Any]] | None = None
    name: str | None = None


class ChatCompletionRequest(_Generation):
    """Body of `POST /v1/chat/completions`: OpenAI's chat fields over the chat template."""

    messages: list[ChatMessage] = Field(min_length=1)
    max_tokens: int | None = Field(default=None, ge=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    logprobs: bool | None = False
    top_logprobs: int | None = Field(default=None, ge=0, le=20)
    # Template controls (transformers' names): continue the last assistant message
    # instead of opening a new one, and extra variables for the template.
    add_generation_prompt: bool = True
    continue_final_message: bool = False
    chat_template_kwargs: dict[str, Any] | None = None
    tools: list[Any] | None = None
    tool_choice: Any = None


# -- embeddings ------------------------------------------------------------------------------
class EmbeddingRequest(_Request):
    """Body of `POST /v1/embeddings` (OpenAI's shape)."""

    model: str | None = None
    input: str | list[str] | list[int] | list[list[int]]
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: int | None = None
    user: str | None = None


# -- tokenizer -------------------------------------------------------------------------------
class TokenizeRequest(_Request):
    """`POST /tokenize`: a prompt's token ids (or a chat's, through the template)."""

    model: str | None = None
    prompt: str | None = None
    messages: list[ChatMessage] | None = None
    add_generation_prompt: bool = True
    return_token_strs: bool = False


class DetokenizeRequest(_Request):
    """`POST /detokenize`: the text of token ids."""

    model: str | None = None
    tokens: list[int]
