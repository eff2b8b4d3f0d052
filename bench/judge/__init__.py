"""LLM-as-a-judge on the golden set's answers (issue 16 point 3).

rubric.py (versioned rubric prompts), verdict.py (parsing a judge's answer), client.py (the judge
model: a local candidate or an endpoint, its tokens and cost), score.py (reference and pairwise
scoring, the figures), labels.py (the judge against human labels), setup.py (config checks before
anything loads), stage.py (the judge block in quality.json).
"""
