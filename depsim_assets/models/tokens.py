"""Token counts for sizing prompts: the endpoint's tokenizer where it has one, else an
estimate that errs on the side of "does not fit"."""

from __future__ import annotations

import math

import httpx

# Characters per token assumed when no tokenizer is at hand: English BPE averages about 4;
# 3.5 errs on the side of "does not fit", which costs a split, not a failed call.
CHARS_PER_TOKEN = 3.5


def approx_tokens(text: str) -> int:
    """A conservative tokenizer-free token estimate (about 3.5 characters per token)."""
    return math.ceil(len(text) / CHARS_PER_TOKEN)


class TokenCounter:
    """Counts tokens with the endpoint's tokenizer where it exposes one (llama.cpp's
    ``POST /tokenize`` on the server root), else estimates (:func:`approx_tokens`)."""

    def __init__(self, base_url: str | None = None, *, timeout_s: float = 10.0):
        root = (base_url or "").rstrip("/").removesuffix("/v1")
        # llama.cpp's llama-server has POST /tokenize {"content"}; llama-cpp-python's server
        # POST /extras/tokenize {"input"}; both answer {"tokens": [...]}.
        self.urls = (
            [(f"{root}/tokenize", "content"), (f"{root}/extras/tokenize", "input")]
            if root.startswith("http") else []
        )
        self.url = self.urls[0][0] if self.urls else None
        self.timeout_s = timeout_s
        self.exact: bool | None = None if self.url else False
        self._cache: dict[str, int] = {}

    @property
    def source(self) -> str:
        """``tokenizer`` when counts come from the server, else ``estimate``."""
        return "tokenizer" if self.exact else "estimate"

    async def count(self, text: str, *, lower_bound: bool = False) -> int:
        """Tokens in ``text``: the server's count, else an estimate that errs high (or, with
        ``lower_bound``, one that errs low: for deciding a prompt is surely too long)."""
        if text in self._cache and (self.exact or not lower_bound):
            return self._cache[text]
        n = None
        if self.exact is not False and self.urls:
            for url, field in list(self.urls):
                try:
                    async with httpx.AsyncClient(timeout=self.timeout_s) as client:
                        response = await client.post(url, json={field: text})
                    tokens = (response.json().get("tokens")
                              if response.status_code == 200 else None)
                    n = len(tokens) if isinstance(tokens, list) else None
                except (httpx.HTTPError, ValueError, AttributeError):
                    n = None
                if n is not None:
                    self.urls = [(url, field)]  # the route that answered is the one to use
                    break
            # The first answer decides for the run: a server without /tokenize is not asked
            # again for every reply.
            if self.exact is None:
                self.exact = n is not None
        if n is None:
            # Few tokenizers average more than 6 characters a token on any text.
            return math.ceil(len(text) / 6) if lower_bound else approx_tokens(text)
        if len(text) > 2000:  # only the static prompts repeat; transcripts are counted once
            self._cache[text] = n
        return n
