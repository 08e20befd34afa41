"""The README's research agent: fetch posts, judge them, save the good ones.

    uv run python -m legion run examples/research_agent.py:ResearchAgent \
        "Find cool posts about Advent of Code and save them"

Without an API key this runs the offline demo (a scripted model, labelled as such); the tools
below use in-memory sample data so the example needs no network. A real ScraperTool would call
the HackerNews API here, in the agent process, with the application's credentials.
"""

from __future__ import annotations

import sys

import legion

SAMPLE_POSTS = [
    {"title": "Advent of Code 2024 in Python: day 5 walkthrough", "points": 210},
    {"title": "My first Advent of Code, solved with Elixir", "points": 95},
    {"title": "Show HN: a toaster that tweets", "points": 12},
    {"title": "Ask HN: how do you keep up with Advent of Code?", "points": 40},
]


class ScraperTool(legion.Tool):
    """Reads posts from HackerNews."""

    def fetch_posts(self) -> list[dict]:
        """Fetches recent posts: a list of {"title": str, "points": int}."""
        return SAMPLE_POSTS


class DatabaseTool(legion.Tool):
    """Stores posts."""

    saved: list[str] = []

    def insert_post(self, title: str) -> str:
        """Saves a post title to the database and returns it."""
        self.saved.append(title)
        return f"saved: {title}"


class ResearchAgent(legion.Agent):
    """Fetch posts, evaluate their relevance and quality, and save the good ones."""

    tools = [ScraperTool, DatabaseTool]
    config = {"max_iterations": 5}


DEMO_STEPS = [
    {
        "action": "eval_and_continue",
        "code": (
            "posts = ScraperTool.fetch_posts()\n"
            "relevant = [p for p in posts if 'advent of code' in p['title'].lower()]\n"
            "[(p['title'], p['points']) for p in relevant]"
        ),
        "result": "",
    },
    {
        "action": "eval_and_continue",
        "code": (
            "good = [p['title'] for p in relevant if p['points'] >= 50]\n"
            "[DatabaseTool.insert_post(t) for t in good]"
        ),
        "result": "",
    },
    {
        "action": "return",
        "code": "",
        "result": "Found 3 posts about Advent of Code and saved the 2 with at least 50 points.",
    },
]

if __name__ == "__main__":
    from legion.run import main

    task = (
        sys.argv[1] if len(sys.argv) > 1 else "Find cool posts about Advent of Code and save them"
    )
    sys.exit(main([f"{__file__}:ResearchAgent", task]))
