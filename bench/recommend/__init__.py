"""The recommender: measured options, their Pareto frontier, the cheapest one meeting the
constraints (with the reason for every rejection), and a routing policy per request class."""
