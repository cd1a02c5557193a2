"""Task instructions by name, as NV-Embed-v2 used them (its `instructions.json` and E5-Mistral's wording).

A query is embedded as `Instruct: {instruction}\\nQuery: {text}`; passages get no prefix unless the task
is symmetric (STS, classification, clustering), where every text carries the instruction.
"""

from __future__ import annotations

QUERY_TEMPLATE = "Instruct: {instruction}\nQuery: "

DEFAULT_RETRIEVAL = "Given a question, retrieve passages that answer the question"

INSTRUCTIONS: dict[str, str] = {
    "retrieval": DEFAULT_RETRIEVAL,
    "ArguAna": "Given a claim, retrieve documents that support or refute the claim",
    "ClimateFEVER": "Given a claim about climate change, retrieve documents that support or refute the claim",
    "DBPedia": "Given a query, retrieve relevant entity descriptions from DBPedia",
    "FEVER": "Given a claim, retrieve documents that support or refute the claim",
    "FiQA2018": "Given a financial question, retrieve relevant passages that answer the query",
    "HotpotQA": "Given a multi-hop question, retrieve documents that can help answer the question",
    "MSMARCO": "Given a web search query, retrieve relevant passages that answer the query",
    "NFCorpus": "Given a question, retrieve relevant documents that answer the question",
    "NQ": "Given a question, retrieve passages that answer the question",
    "QuoraRetrieval": "Given a question, retrieve questions that are semantically equivalent to the given question",
    "SCIDOCS": "Given a scientific paper title, retrieve paper abstracts that are cited by the given paper",
    "SciFact": "Given a scientific claim, retrieve documents that support or refute the claim",
    "TRECCOVID": "Given a query on COVID-19, retrieve documents that answer the query",
    "Touche2020": "Given a question, retrieve passages that answer the question",
    "STS": "Retrieve semantically similar text.",
    "Banking77": "Given a online banking query, find the corresponding intents",
    "Emotion": (
        "Classify the emotion expressed in the given Twitter message into one of the six emotions: anger, "
        "fear, joy, love, sadness, and surprise"
    ),
    "TwentyNewsgroups": "Identify the topic or theme of the given news articles",
}

# Tasks whose corpus side carries the instruction too (NV-Embed-v2 treats Quora as symmetric).
SYMMETRIC_TASKS = frozenset({"QuoraRetrieval", "STS", "Banking77", "Emotion", "TwentyNewsgroups"})


def get_instruction(name_or_text: str) -> str:
    """A registered task name (case-insensitive) gives its instruction; any other text is used as written."""
    if not isinstance(name_or_text, str):
        raise TypeError(f"instruction must be a string, got {type(name_or_text).__name__}")
    for name, instruction in INSTRUCTIONS.items():
        if name.lower() == name_or_text.strip().lower():
            return instruction
    return name_or_text


def query_prefix(instruction: str) -> str:
    """The text put before a query: `Instruct: {instruction}\\nQuery: ` (empty instruction -> no prefix)."""
    instruction = get_instruction(instruction)
    return QUERY_TEMPLATE.format(instruction=instruction) if instruction else ""
