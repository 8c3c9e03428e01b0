"""Large, deterministic worlds for benchmarks: accountant offices with many debtors, client logins with few
companies. `generate_world(tokens=2000)` gives 200 master logins (20-200 debtors each) and 1,800 debtor-level
client logins (1-3 companies each), about 40,000 companies in all."""

from __future__ import annotations

import random
from typing import Any

TAGS = (("Horeca", "#E4572E"), ("Retail", "#17BEBB"), ("Zorg", "#76B041"), ("Bouw", "#FFC914"),
        ("Transport", "#2E86AB"), ("ICT", "#A23B72"), ("Onderwijs", "#F18F01"), ("Agrarisch", "#3B1F2B"))
PERIOD_WEIGHTS = (("Month", 80), ("Week4", 17), ("Year", 3))
COMPANIES_PER_DEBTOR = ((1, 45), (2, 35), (3, 20))  # mean 1.75


def _pick(rng: random.Random, weighted: tuple[tuple[Any, int], ...]) -> Any:
    values, weights = zip(*weighted, strict=True)
    return rng.choices(values, weights)[0]


def _token(rng: random.Random) -> str:
    return f"{rng.getrandbits(128):032x}"


def _check_arguments(tokens: int, accountant_share: float, min_debtors: int, max_debtors: int,
                     max_client_companies: int) -> None:
    if tokens < 1:
        raise ValueError(f"tokens must be >= 1, got {tokens}")
    if not 0 <= accountant_share <= 1:
        raise ValueError(f"accountant_share must be between 0 and 1, got {accountant_share}")
    if not 1 <= min_debtors <= max_debtors:
        raise ValueError(f"need 1 <= min_debtors <= max_debtors, got {min_debtors} and {max_debtors}")
    if max_client_companies < 1:
        raise ValueError(f"max_client_companies must be >= 1, got {max_client_companies}")


def generate_world(*, tokens: int = 2000, accountant_share: float = 0.1, seed: int = 0, min_debtors: int = 20,
                   max_debtors: int = 200, max_client_companies: int = 3, all_tags_share: float = 0.6
                   ) -> dict[str, Any]:
    """A scenario dict with `tokens` logins; the same arguments always give the same world."""
    _check_arguments(tokens, accountant_share, min_debtors, max_debtors, max_client_companies)
    rng = random.Random(seed)
    accountants = round(tokens * accountant_share)
    clients = tokens - accountants
    next_debtor, next_company = 100_000, 1_000_000
    environments: list[dict[str, Any]] = []

    def new_debtor(number: int, name: str, tags: list[str], companies: int) -> dict[str, Any]:
        nonlocal next_debtor, next_company
        next_debtor += 1
        rows = []
        for k in range(companies):
            next_company += 1
            row = {"id": next_company, "number": number * 10 + k + 1, "name": f"{name} {k + 1} B.V.",
                   "period": _pick(rng, PERIOD_WEIGHTS)}
            if rng.random() < 0.7:
                row["kvk"] = f"{rng.randrange(10_000_000, 99_999_999)}"
            rows.append(row)
        return {"id": next_debtor, "number": f"D{number:04d}", "name": name, "tags": tags, "companies": rows}

    for i in range(accountants):
        tag_count = rng.randint(3, len(TAGS))
        tags = [{"number": n + 1, "name": name, "color": color} for n, (name, color) in enumerate(TAGS[:tag_count])]
        tag_names = [name for name, _ in TAGS[:tag_count]]
        debtors = [new_debtor(d + 1, f"Office {i + 1} client {d + 1}", rng.sample(tag_names, rng.randint(0, 2)),
                              _pick(rng, COMPANIES_PER_DEBTOR))
                   for d in range(rng.randint(min_debtors, max_debtors))]
        if rng.random() < all_tags_share:
            tag_filter: str | list[str] = "all"
        else:
            tag_filter = rng.sample(tag_names, rng.randint(1, 2))
        environments.append({
            "sub_domain": f"office-{i + 1:04d}", "product": "accountant", "tags": tags, "debtors": debtors,
            "logins": [{"username": f"master@office-{i + 1:04d}.example", "level": "accountant",
                        "token": _token(rng), "tag_filter": tag_filter}],
        })

    for j in range(clients):
        username = f"client-{j + 1:05d}@customer.example"
        wanted = rng.randint(1, max_client_companies)
        if environments and environments[0]["product"] == "accountant" and accountants:
            env = environments[rng.randrange(accountants)]
            debtor = rng.choice(env["debtors"])
            while len(debtor["companies"]) < wanted:  # the debtor-level customer runs `wanted` companies
                next_company += 1
                debtor["companies"].append({"id": next_company, "number": next_company % 1_000_000,
                                            "name": f"{debtor['name']} extra B.V.", "period": "Month"})
            chosen = rng.sample([c["id"] for c in debtor["companies"]], wanted)
            env["logins"].append({"username": username, "level": "client", "token": _token(rng),
                                  "debtor": debtor["id"], "company_filter": sorted(chosen)})
        else:  # no accountants at all: each client is a business customer with its own environment
            debtor = new_debtor(1, f"Business {j + 1}", [], wanted)
            environments.append({
                "sub_domain": f"business-{j + 1:05d}", "product": "business", "debtors": [debtor],
                "logins": [{"username": username, "level": "client", "token": _token(rng),
                            "company_filter": [c["id"] for c in debtor["companies"]]}],
            })
    return {"settings": {"seed": seed}, "environments": environments}


def summarize(scenario: dict[str, Any]) -> dict[str, int]:
    envs = scenario.get("environments") or []
    debtors = [d for e in envs for d in e.get("debtors") or []]
    logins = [lg for e in envs for lg in e.get("logins") or []]
    return {"environments": len(envs), "debtors": len(debtors),
            "companies": sum(len(d.get("companies") or []) for d in debtors), "logins": len(logins),
            "accountant_logins": sum(1 for lg in logins if lg.get("level") == "accountant"),
            "client_logins": sum(1 for lg in logins if lg.get("level") == "client")}
