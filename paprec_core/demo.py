"""The demo store: a small, synthetic beauty shop in P5's on-disk format.

PAP-REC Studio ships no real data (the Amazon sets may not be redistributed),
so the dashboard, the tests and first-time users work on a store that this
module *generates*. ``generate_demo(out_dir, seed)`` is deterministic: the same
seed and sizes give byte-identical files on every machine, and the whole store
is produced in a few seconds and weighs a few MB.

Files written (exactly P5's formats, so every reader of real data reads it)
--------------------------------------------------------------------------
``sequential_data.txt``
    One line per user, ``USER_ID ITEM_ID ITEM_ID ...``, 1-based integer ids,
    in time order, LF line endings. Users are numbered 1..n_users in order;
    items are numbered 1..n_items in order of first appearance in this file
    (as P5 numbers them). The last item of a line is the test target, the
    second-to-last the validation target.
``datamaps.json``
    ``user2id`` / ``id2user`` (raw ids ``DEMO_U0001`` ...), ``item2id`` /
    ``id2item`` (ASIN-like raw ids ``D#########``), ``attribute2id``,
    ``id2attribute`` and ``attributeid2num`` (brands and category names; the
    number of items carrying each attribute). Value types follow the real
    files: ids in ``user2id``/``item2id`` are text, in ``attribute2id`` ints.
``item2attributes.json``
    Item id (text) -> list of attribute ids: the brand, then every level of the
    item's category path below the root ``Beauty``.
``meta.json.gz``
    Gzipped text, one Python-literal dict per line (``repr`` of a dict, as in
    Amazon's meta files), with ``asin``, ``title``, ``brand``, ``categories``
    (a list holding one category path, Amazon style), ``price`` and
    ``salesRank``. The gzip header carries no time stamp, so the file is
    reproducible byte for byte.
``exp_splits.pkl``
    A pickled dict ``{"train": [...], "val": [...], "test": [...]}`` of review
    records with ``reviewerID``, ``asin``, ``overall`` (int 1-5),
    ``explanation``, ``feature``, ``summary`` and ``reviewText``. Every
    interaction carries a review; each user's last review is in ``test``, the
    second-to-last in ``val`` and the rest in ``train`` -- the same
    leave-one-out cut as the sequential data, so every split can be grouped by
    user and every user appears in all three.

The generative process
----------------------
All randomness comes from one ``numpy.random.default_rng(seed)``, consumed in
a fixed order, so the store is a pure function of ``(seed, n_users, n_items)``.

1. **Catalogue.** Ten categories, each a path such as
   ``Beauty > Skin Care > Face > Serums`` with three product types (for
   example "Face Serum", "Vitamin C Serum", "Night Serum") and six review
   features (for example texture, scent, absorption, results, price,
   packaging). Categories have fixed relative sizes (between 0.7 and 1.4); each
   of the ``n_items`` items is assigned a category in proportion to them (every
   category gets at least two items). There are 25 invented brands; each sells
   in one or two category *groups* (skin care, hair care, makeup, nails,
   fragrance) and has a Zipf-like market share, and an item's brand is drawn
   among the brands selling in its group. Titles are brand + adjective +
   descriptor + product type ("Lumiere Rose Hydrating Face Serum"), redrawn
   until unique and free of doubled words. Each item gets a price (a
   category base price times a log-normal factor, ending in .99) and a hidden
   quality (normal, sd 0.35).
2. **Popularity.** Within each category the items get a random rank ``r``
   (1 = most popular) and the weight ``1 / r``: Zipf-like popularity with a
   long tail. ``salesRank`` in the meta file is the global rank of the weight.
3. **Follow-ups (the sequential signal).** Every item has one or two
   follow-up items, fixed for the whole store: the first is in the
   category's *routine successor* (cleanser -> serum -> moisturizer ->
   cleanser, shampoo -> conditioner -> styling -> shampoo, lipstick ->
   mascara -> nail polish -> lipstick, fragrance -> moisturizer, ...), of the
   same brand whenever the brand sells there; the second (for half of the
   items) is in the category's *complement* (a cross-category pairing such as
   mascara -> eau de parfum). Within the target category a follow-up is drawn
   with weight ``sqrt(popularity)``. The first follow-up is chosen with
   probability 0.7, the second with 0.3, when an item has two.
4. **Users.** Each user picks 2 or 3 favourite categories (weighted by
   category size) with Dirichlet(1, ..., 1) weights over them, one or two
   preferred brands among the brands of those categories, and a feature they
   care about for each favourite category. The sequence length is
   ``5 + min(G, 15)`` with ``G`` geometric with mean 4 (so 5..20, mostly short,
   mean about 8.9, like an Amazon 5-core set).
5. **Sequences.** The first item is a *taste draw*: a category from the user's
   weights (with probability 0.05 any category, by size), then an item of that
   category with weight popularity x 50 if its brand is preferred (users are
   brand-loyal: that is the taste a user token can learn for matching). Each next
   item is, with probability 0.55, a follow-up of the last item; with
   probability 0.10 a follow-up of the second-to-last item; otherwise a taste
   draw. Nobody buys an item twice: a follow-up already bought falls back to
   the other follow-up, then to a taste draw, and taste draws skip bought
   items. Items that nobody drew at all are each given to one user who likes
   their category (or any user) as that user's very first purchase, so every
   catalogue item has at least one interaction and ids run 1..n_items.
6. **Ratings.** ``round(3.5 + 0.9 * a + 0.4 * b + q + e)`` clipped to 1..5,
   where ``a`` is the user's affinity for the item's category (its Dirichlet
   weight times the number of favourites, capped at 1.5; 0 outside the
   favourites), ``b`` is 1 for a preferred brand, ``q`` the item's quality and
   ``e`` normal noise (sd 0.75). The mean rating is about 4, as on Amazon.
7. **Reviews.** The review's feature is the user's own feature for the
   category when they have one (70 % of the time), else one of the item's two
   salient features. The rating sets the sentiment (4-5 positive, 3 neutral,
   1-2 negative); the explanation is a template ("i love that the {feature}
   {phrase}", "sadly the {feature} {phrase}", ...) filled with a
   feature-and-sentiment phrase ("scent" + positive -> "is light and lasts all
   day"), lower case, 6-15 words. ``reviewText`` is the explanation plus a
   plain second sentence ("the {feature} {phrase}") about another feature of
   the category, ``summary`` a short
   title-like phrase. The vocabulary is a few hundred words, so a tokenizer
   trained on the store stays small.

What a model can learn here: the last item's follow-ups predict the next item
often enough that an item-to-item transition table beats the most-popular
baseline ten times over (sequential), and a user's favourite categories and
brands (a third of all purchases are taste draws, and the follow-ups of
those stay with the brand) rank a matching list's target above its
popularity (matching).
"""

from __future__ import annotations

import gzip
import io
import json
import pickle
from pathlib import Path

import numpy as np

from .errors import ConfigError

__all__ = ["generate_demo", "DEMO_FILES"]

DEMO_FILES = (
    "sequential_data.txt",
    "datamaps.json",
    "item2attributes.json",
    "meta.json.gz",
    "exp_splits.pkl",
)

# ---------------------------------------------------------------------------
# Catalogue vocabulary
# ---------------------------------------------------------------------------

# name, path below "Beauty", group, relative size, base price, product types,
# features, routine successor (index), complement (index)
_CATEGORIES = [
    ("Cleansers", ["Skin Care", "Face", "Cleansers"], "skin", 1.0, 12,
     ["Foaming Cleanser", "Cleansing Oil", "Micellar Water"],
     ["scent", "texture", "lather", "skin feel", "price", "packaging"], 1, 3),
    ("Serums", ["Skin Care", "Face", "Serums"], "skin", 1.2, 28,
     ["Face Serum", "Vitamin C Serum", "Night Serum"],
     ["texture", "scent", "absorption", "results", "price", "packaging"], 2, 7),
    ("Moisturizers", ["Skin Care", "Face", "Moisturizers"], "skin", 1.4, 22,
     ["Day Cream", "Face Moisturizer", "Gel Cream"],
     ["texture", "scent", "hydration", "finish", "price", "packaging"], 0, 6),
    ("Shampoos", ["Hair Care", "Shampoos"], "hair", 1.2, 10,
     ["Shampoo", "Clarifying Shampoo", "Volumizing Shampoo"],
     ["scent", "lather", "volume", "shine", "price", "packaging"], 4, 0),
    ("Conditioners", ["Hair Care", "Conditioners"], "hair", 1.0, 11,
     ["Conditioner", "Leave-In Conditioner", "Hair Mask"],
     ["scent", "softness", "detangling", "shine", "price", "packaging"], 5, 8),
    ("Styling Products", ["Hair Care", "Styling Products"], "hair", 0.8, 13,
     ["Hair Spray", "Styling Gel", "Texturizing Spray"],
     ["hold", "scent", "shine", "residue", "price", "packaging"], 3, 6),
    ("Lipstick", ["Makeup", "Lips", "Lipstick"], "makeup", 1.1, 16,
     ["Matte Lipstick", "Lip Gloss", "Lip Tint"],
     ["color", "finish", "wear", "texture", "price", "packaging"], 7, 9),
    ("Mascara", ["Makeup", "Eyes", "Mascara"], "makeup", 0.9, 14,
     ["Mascara", "Eyeliner", "Brow Pencil"],
     ["volume", "wear", "brush", "color", "smudging", "price"], 9, 8),
    ("Eau de Parfum", ["Fragrance", "Women's", "Eau de Parfum"], "fragrance", 0.8, 45,
     ["Eau de Parfum", "Body Mist", "Eau de Toilette"],
     ["scent", "longevity", "strength", "packaging", "price"], 2, 6),
    ("Nail Polish", ["Makeup", "Nails", "Nail Polish"], "nails", 0.7, 9,
     ["Nail Polish", "Top Coat", "Nail Strengthener"],
     ["color", "shine", "wear", "drying time", "brush", "price"], 6, 1),
]

# brand name, groups it sells in
_BRANDS = [
    ("Lumiere", ["skin", "makeup"]), ("Verdana", ["skin"]), ("Aurelia", ["skin", "fragrance"]),
    ("Nordic Dew", ["skin"]), ("Calmera", ["skin", "hair"]), ("Petalux", ["skin", "nails"]),
    ("Silkvale", ["hair"]), ("Mane Theory", ["hair"]), ("Brio", ["hair", "makeup"]),
    ("Oceane", ["hair", "skin"]), ("Kinfolk", ["hair"]), ("Rougette", ["makeup"]),
    ("Lashique", ["makeup"]), ("Velvet Muse", ["makeup", "nails"]), ("Cirrus", ["makeup"]),
    ("Glossworth", ["makeup", "nails"]), ("Opaline", ["nails"]), ("Polished Fox", ["nails"]),
    ("Maison Azur", ["fragrance"]), ("Noir Jasmin", ["fragrance"]), ("Solenne", ["fragrance", "skin"]),
    ("Ambrette", ["fragrance"]), ("Fernwood", ["skin", "hair"]), ("Kalia", ["makeup", "skin"]),
    ("Mirabel", ["fragrance", "makeup"]),
]

_ADJECTIVES = [
    "Rose", "Velvet", "Pure", "Golden", "Coconut", "Lavender", "Citrus", "Honey",
    "Midnight", "Crystal", "Silk", "Ocean", "Vanilla", "Peony", "Amber", "Cloud",
    "Jasmine", "Berry", "Pearl", "Cherry", "Matcha", "Almond",
]
_DESCRIPTORS = {
    "skin": ["Hydrating", "Gentle", "Brightening", "Soothing", "Renewing", "Firming", "Daily", "Calming"],
    "hair": ["Repairing", "Smoothing", "Volumizing", "Nourishing", "Strengthening", "Daily", "Color Safe", "Light"],
    "makeup": ["Long Wear", "Ultra", "Soft Focus", "Intense", "Waterproof", "Satin", "Bold", "Sheer"],
    "nails": ["Quick Dry", "Gel Effect", "Chip Resistant", "Glossy", "Ultra", "Strengthening", "Sheer", "Bold"],
    "fragrance": ["Signature", "Eternal", "Radiant", "Soft", "Intense", "Classic", "Fresh", "Night"],
}

# feature -> (positive, neutral, negative) predicates ("the {feature} ...")
_PHRASES = {
    "scent": (["is light and lasts all day", "smells clean and fresh", "is lovely without being too strong"],
              ["is okay but a bit strong", "fades rather quickly"],
              ["is far too strong for me", "smells cheap and artificial"]),
    "texture": (["is smooth and never feels sticky", "is silky and light", "feels rich but not greasy"],
                ["is a little thick", "is fine but slightly tacky"],
                ["is sticky and heavy", "feels greasy on my skin"]),
    "lather": (["is rich and creamy", "builds up quickly with a little product", "is thick and rinses clean"],
               ["is thin but does the job", "could be a bit richer"],
               ["barely builds up at all", "is thin and watery"]),
    "skin feel": (["is soft and clean after every use", "leaves my face calm and fresh", "is clean but never tight"],
                  ["is fine but a little dry", "is okay for daily use"],
                  ["leaves my skin tight and dry", "is rough and irritated afterwards"]),
    "price": (["is great for the quality", "is fair for how long it lasts", "is a real bargain"],
              ["is a bit high for what you get", "is about what i expected"],
              ["is way too high for this", "is not worth it at all"]),
    "packaging": (["is pretty and easy to use", "is sturdy and travel friendly", "looks elegant on my shelf"],
                  ["is plain but works", "is a little hard to open"],
                  ["leaked all over my bag", "broke after a week"]),
    "absorption": (["is fast and leaves no film", "sinks in within seconds", "is quick under makeup"],
                   ["takes a while but is fine", "is slower than i hoped"],
                   ["is slow and leaves a film", "never really sinks in"]),
    "results": (["showed up within two weeks", "are visible and my skin glows", "are better than any serum i tried"],
                ["are subtle so far", "are slow but there"],
                ["never showed up at all", "were nothing after a month"]),
    "hydration": (["lasts all day long", "keeps my dry skin happy", "is deep without feeling heavy"],
                  ["is enough for summer only", "is decent but not long lasting"],
                  ["is gone within an hour", "is not enough for dry skin"]),
    "finish": (["is soft and natural", "is smooth and never shiny", "looks fresh and even"],
               ["is a little shiny", "is okay but not matte"],
               ["is greasy and shiny", "looks patchy and dull"]),
    "volume": (["is amazing and lasts all day", "is full without clumps", "is noticeable from the first use"],
               ["is there but not dramatic", "is modest at best"],
               ["is flat and lifeless", "is nowhere to be seen"]),
    "shine": (["is glossy and healthy", "looks salon fresh", "is bright and lasts"],
              ["is fine but not special", "is a bit subtle"],
              ["is dull and flat", "is gone by noon"]),
    "softness": (["is amazing after one wash", "makes my hair feel like silk", "lasts until the next wash"],
                 ["is okay but not lasting", "is fine for thin hair"],
                 ["is missing and my hair feels rough", "never shows up for me"]),
    "detangling": (["is effortless even on wet hair", "makes brushing so easy", "works on my curly hair"],
                   ["helps a little", "is okay for short hair"],
                   ["does nothing for knots", "is worse than no conditioner"]),
    "hold": (["is strong but still flexible", "lasts all day without crunch", "keeps my curls in place"],
             ["is light and fades by evening", "is fine for soft styles"],
             ["is weak and gone in an hour", "is stiff and crunchy"]),
    "residue": (["is none at all", "is barely there and brushes out", "never shows up on dark hair"],
                ["is a little visible", "is noticeable on day two"],
                ["is heavy and flaky", "builds up after two days"]),
    "color": (["is rich and true to the picture", "is gorgeous and flattering", "is bold and even"],
              ["is a bit darker than shown", "is nice but not unique"],
              ["is nothing like the picture", "looks patchy and dull"]),
    "wear": (["lasts all day without touch ups", "survives coffee and lunch", "stays put for hours"],
             ["lasts about half a day", "needs a touch up or two"],
             ["fades within an hour", "chips on the first day"]),
    "brush": (["is precise and easy to control", "grabs every single lash", "makes application quick"],
              ["is fine but a bit big", "takes some practice"],
              ["is clumsy and messy", "is too stiff to use"]),
    "smudging": (["is never a problem", "is zero even in summer", "never happens even after a long day"],
                 ["happens a little by evening", "is minor but there"],
                 ["is constant under my eyes", "starts within an hour"]),
    "longevity": (["is impressive and lasts past dinner", "is great on skin and clothes", "lasts from morning to night"],
                  ["is about four hours", "is average for a perfume"],
                  ["is an hour at most", "is gone before lunch"]),
    "strength": (["is just right for the office", "is noticeable without being loud", "is soft but present"],
                 ["is a little too soft", "is a bit strong at first"],
                 ["is overwhelming for everyone", "is so weak i cannot smell it"]),
    "drying time": (["is really quick", "is under two minutes", "is fast even with two coats"],
                    ["is average", "takes a little patience"],
                    ["is painfully slow", "is so long that it smudges"]),
}

_TEMPLATES = {
    "pos": ["the {f} {p}", "i love that the {f} {p}", "really happy because the {f} {p}",
            "the {f} {p} and i would buy it again", "for a {t} the {f} {p}"],
    "neu": ["the {f} {p}", "overall the {f} {p}", "it is fine but the {f} {p}",
            "not bad although the {f} {p}"],
    "neg": ["the {f} {p}", "sadly the {f} {p}", "disappointed because the {f} {p}",
            "the {f} {p} so i will not buy again"],
}

_SUMMARIES = {
    "pos": ["Love it", "Great {t}", "My new favorite", "Works great", "Highly recommend"],
    "neu": ["It is okay", "Not bad", "Decent {t}", "Average at best"],
    "neg": ["Disappointed", "Not for me", "Would not buy again", "Waste of money"],
}

_N_CAT = len(_CATEGORIES)
_P_LAST = 0.55          # next item is a follow-up of the last item
_P_SECOND = 0.10        # ... of the second-to-last item
_P_EXPLORE = 0.05       # a taste draw picks any category (by size)
# Brand loyalty is what a user token can learn and a popularity list cannot.
# At 4x, a category-and-brand taste model did not beat most-popular on the
# matching test split (HR@5 0.26 vs 0.28) and neither did the demo backbone's
# Seen prompt (0.21); at 50x the taste model gets 0.34 vs 0.23, while the
# transition baseline for sequential barely moves (0.59 -> 0.57). (Fewer
# follow-ups, 0.40 / 0.05, gave taste more weight still, but the 20-epoch
# backbone then learned neither task beyond popularity.)
_BRAND_BOOST = 50.0     # taste-draw weight multiplier for a preferred brand
_MIN_LEN, _MAX_LEN = 5, 20


def _sentiment(rating: int) -> str:
    return "pos" if rating >= 4 else ("neu" if rating == 3 else "neg")


def _short_type(ptype: str) -> str:
    return ptype.split()[-1].lower()


# ---------------------------------------------------------------------------
# Generation
# ---------------------------------------------------------------------------

def _catalogue(rng: np.random.Generator, n_items: int) -> dict:
    sizes = np.array([c[3] for c in _CATEGORIES], dtype=float)
    # category per item: at least 2 each, the rest in proportion to size
    counts = np.full(_N_CAT, 2)
    extra = n_items - counts.sum()
    counts += np.floor(extra * sizes / sizes.sum()).astype(int)
    rest = n_items - counts.sum()
    order = np.argsort(-sizes, kind="stable")
    for k in range(rest):
        counts[order[k % _N_CAT]] += 1
    item_cat = np.repeat(np.arange(_N_CAT), counts)
    item_cat = item_cat[rng.permutation(n_items)]

    brand_share = 1.0 / np.arange(1, len(_BRANDS) + 1) ** 0.6
    brand_share = brand_share[rng.permutation(len(_BRANDS))]
    brands_of_group = {}
    for b, (_, groups) in enumerate(_BRANDS):
        for g in groups:
            brands_of_group.setdefault(g, []).append(b)

    item_brand = np.empty(n_items, dtype=int)
    titles, seen_titles = [], {}
    for i in range(n_items):
        cat = _CATEGORIES[item_cat[i]]
        cands = brands_of_group[cat[2]]
        w = brand_share[cands] / brand_share[cands].sum()
        b = cands[rng.choice(len(cands), p=w)]
        item_brand[i] = b
        for attempt in range(50):
            adj = _ADJECTIVES[rng.integers(len(_ADJECTIVES))]
            desc = _DESCRIPTORS[cat[2]][rng.integers(len(_DESCRIPTORS[cat[2]]))]
            ptype = cat[5][rng.integers(len(cat[5]))]
            title = f"{_BRANDS[b][0]} {adj} {desc} {ptype}"
            if title not in seen_titles and desc not in ptype:  # no "Volumizing Volumizing ..."
                break
        else:  # pragma: no cover - only for very large catalogues
            title = f"{title} No. {len(titles) + 1}"
        seen_titles[title] = i
        titles.append((title, ptype))

    # Zipf-like popularity within each category
    pop = np.empty(n_items)
    for c in range(_N_CAT):
        idx = np.flatnonzero(item_cat == c)
        ranks = rng.permutation(len(idx)) + 1
        pop[idx] = 1.0 / ranks
    price = np.array([_CATEGORIES[c][4] for c in item_cat], dtype=float)
    price = np.maximum(1, np.round(price * rng.lognormal(0.0, 0.35, n_items))) - 0.01
    quality = rng.normal(0.0, 0.35, n_items)
    salient = np.array([rng.choice(len(_CATEGORIES[c][6]), size=2, replace=False) for c in item_cat])

    # follow-ups
    cat_items = [np.flatnonzero(item_cat == c) for c in range(_N_CAT)]
    follow = []
    for i in range(n_items):
        c = item_cat[i]
        succ, comp = _CATEGORIES[c][7], _CATEGORIES[c][8]
        pool = cat_items[succ]
        same = pool[item_brand[pool] == item_brand[i]]
        if len(same):
            pool = same
        pool = pool[pool != i]
        w = np.sqrt(pop[pool])
        first = int(pool[rng.choice(len(pool), p=w / w.sum())])
        ups = [first]
        if rng.random() < 0.5:
            pool = cat_items[comp]
            pool = pool[(pool != i) & (pool != first)]
            if len(pool):
                w = np.sqrt(pop[pool])
                ups.append(int(pool[rng.choice(len(pool), p=w / w.sum())]))
        follow.append(ups)

    return dict(cat=item_cat, brand=item_brand, titles=titles, pop=pop, price=price,
                quality=quality, salient=salient, follow=follow, cat_items=cat_items,
                brands_of_group=brands_of_group)


def _users(rng: np.random.Generator, n_users: int, cat: dict) -> list[dict]:
    sizes = np.array([c[3] for c in _CATEGORIES], dtype=float)
    size_p = sizes / sizes.sum()
    users = []
    for _ in range(n_users):
        k = int(rng.integers(2, 4))
        favs = rng.choice(_N_CAT, size=k, replace=False, p=size_p)
        weights = rng.dirichlet(np.ones(k))
        brand_pool = sorted({b for c in favs for b in cat["brands_of_group"][_CATEGORIES[c][2]]})
        n_b = int(rng.integers(1, 3))
        pref_brands = [int(b) for b in rng.choice(brand_pool, size=n_b, replace=False)]
        care = {int(c): int(rng.integers(len(_CATEGORIES[c][6]))) for c in favs}
        length = _MIN_LEN + min(int(rng.geometric(0.2)) - 1, _MAX_LEN - _MIN_LEN)
        users.append(dict(favs=[int(c) for c in favs], weights=weights,
                          brands=pref_brands, care=care, length=length))
    return users


def _sequences(rng: np.random.Generator, users: list[dict], cat: dict) -> list[list[int]]:
    sizes = np.array([c[3] for c in _CATEGORIES], dtype=float)
    size_p = sizes / sizes.sum()
    follow, pop, brand = cat["follow"], cat["pop"], cat["brand"]
    seqs = []
    for u in users:
        taste = {}
        for c in range(_N_CAT):
            idx = cat["cat_items"][c]
            w = pop[idx] * np.where(np.isin(brand[idx], u["brands"]), _BRAND_BOOST, 1.0)
            taste[c] = (idx, w)
        seq: list[int] = []
        bought = set()

        def taste_draw() -> int:
            for _ in range(20):
                if rng.random() < _P_EXPLORE:
                    c = int(rng.choice(_N_CAT, p=size_p))
                else:
                    c = u["favs"][rng.choice(len(u["favs"]), p=u["weights"])]
                idx, w = taste[c]
                w = w * np.array([j not in bought for j in idx])
                if w.sum() > 0:
                    return int(idx[rng.choice(len(idx), p=w / w.sum())])
            free = [j for j in range(len(pop)) if j not in bought]
            return free[int(rng.integers(len(free)))]

        for t in range(u["length"]):
            r = rng.random()
            src = None
            if t >= 1 and r < _P_LAST:
                src = seq[-1]
            elif t >= 2 and r < _P_LAST + _P_SECOND:
                src = seq[-2]
            nxt = None
            if src is not None:
                ups = follow[src]
                pick = 0 if len(ups) == 1 or rng.random() < 0.7 else 1
                for j in (ups[pick], ups[1 - pick] if len(ups) == 2 else ups[0]):
                    if j not in bought:
                        nxt = j
                        break
            if nxt is None:
                nxt = taste_draw()
            seq.append(nxt)
            bought.add(nxt)
        seqs.append(seq)

    # every catalogue item gets at least one interaction
    counts = np.zeros(len(pop), dtype=int)
    for s in seqs:
        counts[s] += 1
    for i in np.flatnonzero(counts == 0):
        c = cat["cat"][i]
        room = [k for k in range(len(users)) if len(seqs[k]) < _MAX_LEN and i not in seqs[k]]
        fans = [k for k in room if c in users[k]["favs"]]
        pool = fans or room or list(range(len(users)))
        k = pool[int(rng.integers(len(pool)))]
        seqs[k].insert(0, int(i))
    return seqs


def _explanation(rng, feature: str, sentiment: str, ptype: str) -> str:
    s = {"pos": 0, "neu": 1, "neg": 2}[sentiment]
    phrases = _PHRASES[feature][s]
    p = phrases[rng.integers(len(phrases))]
    options = []
    for tpl in _TEMPLATES[sentiment]:
        text = tpl.format(f=feature, p=p, t=_short_type(ptype))
        if 6 <= len(text.split()) <= 15:
            options.append(text)
    if not options:  # pragma: no cover - every phrase fits some template
        options = [f"the {feature} {p}"]
    return options[rng.integers(len(options))]


def _reviews(rng, users, seqs, cat, user_raw, item_raw) -> dict:
    splits = {"train": [], "val": [], "test": []}
    # equal strings share one object, so the pickle stores each text once
    # (pickle memoizes by identity); this keeps exp_splits.pkl small
    shared: dict[str, str] = {}
    intern = lambda text: shared.setdefault(text, text)  # noqa: E731
    for k, (u, seq) in enumerate(zip(users, seqs)):
        n = len(seq)
        for t, i in enumerate(seq):
            c = int(cat["cat"][i])
            ucat = _CATEGORIES[c]
            aff = 0.0
            if c in u["favs"]:
                aff = min(1.5, float(u["weights"][u["favs"].index(c)]) * len(u["favs"]))
            b = 1.0 if int(cat["brand"][i]) in u["brands"] else 0.0
            score = 3.5 + 0.9 * aff + 0.4 * b + cat["quality"][i] + rng.normal(0.0, 0.75)
            rating = int(min(5, max(1, round(score))))
            sent = _sentiment(rating)
            feats = ucat[6]
            if c in u["care"] and rng.random() < 0.7:
                f = feats[u["care"][c]]
            else:
                f = feats[cat["salient"][i][rng.integers(2)]]
            ptype = cat["titles"][i][1]
            expl = _explanation(rng, f, sent, ptype)
            others = [g for g in feats if g != f]
            f2 = others[rng.integers(len(others))]
            s2 = _PHRASES[f2][{"pos": 0, "neu": 1, "neg": 2}[sent]]
            second = f"the {f2} {s2[rng.integers(len(s2))]}"
            summ = _SUMMARIES[sent][rng.integers(len(_SUMMARIES[sent]))].format(t=_short_type(ptype))
            rec = {
                "reviewerID": user_raw[k],
                "asin": item_raw[i],
                "overall": rating,
                "explanation": intern(expl),
                "feature": intern(f),
                "summary": intern(summ),
                "reviewText": intern(f"{expl.capitalize()}. {second.capitalize()}."),
            }
            split = "test" if t == n - 1 else ("val" if t == n - 2 else "train")
            splits[split].append(rec)
    return splits


def generate_demo(out_dir: str | Path, seed: int = 0, n_users: int = 2000, n_items: int = 800) -> Path:
    """Write the synthetic demo store into ``out_dir`` and return its path.

    The files and the generative process are described in this module's
    docstring. The result is a pure function of ``(seed, n_users, n_items)``:
    byte-identical on every run. Existing files of the same names are
    overwritten; other files in ``out_dir`` are left alone.
    """
    if not isinstance(n_users, (int, np.integer)) or n_users < 1:
        raise ConfigError("n_users", f"must be a positive integer, got {n_users!r}")
    if not isinstance(n_items, (int, np.integer)) or n_items < 4 * _N_CAT:
        raise ConfigError("n_items", f"must be an integer of at least {4 * _N_CAT}, got {n_items!r}")
    if n_items > n_users * _MIN_LEN:
        raise ConfigError("n_items", f"{n_items} items cannot all be bought by {n_users} users; "
                                     f"use at most {n_users * _MIN_LEN} items or more users")
    n_users, n_items = int(n_users), int(n_items)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)

    cat = _catalogue(rng, n_items)
    users = _users(rng, n_users, cat)
    seqs = _sequences(rng, users, cat)

    # P5 numbering: users in order, items by first appearance
    item_id = {}
    for s in seqs:
        for i in s:
            if i not in item_id:
                item_id[i] = len(item_id) + 1
    order = sorted(item_id, key=item_id.get)  # catalogue index by published id

    width = max(4, len(str(n_users)))
    user_raw = [f"DEMO_U{k + 1:0{width}d}" for k in range(n_users)]
    asin_nums: list[int] = []
    taken = set()
    while len(asin_nums) < n_items:
        for v in rng.integers(10 ** 8, 10 ** 9, size=n_items):
            v = int(v)
            if v not in taken and len(asin_nums) < n_items:
                taken.add(v)
                asin_nums.append(v)
    item_raw = {i: f"D{asin_nums[n]:09d}" for n, i in enumerate(order)}

    # sequential_data.txt
    lines = [" ".join([str(k + 1)] + [str(item_id[i]) for i in s]) for k, s in enumerate(seqs)]
    (out / "sequential_data.txt").write_bytes(("\n".join(lines) + "\n").encode("ascii"))

    # attributes: brand, then category path levels; ids by first appearance in item-id order
    attribute2id: dict[str, int] = {}
    item2attributes = {}
    attr_count: dict[int, int] = {}
    for i in order:
        names = [_BRANDS[cat["brand"][i]][0]] + _CATEGORIES[cat["cat"][i]][1]
        ids = []
        for a in names:
            if a not in attribute2id:
                attribute2id[a] = len(attribute2id) + 1
            ids.append(attribute2id[a])
            attr_count[attribute2id[a]] = attr_count.get(attribute2id[a], 0) + 1
        item2attributes[str(item_id[i])] = ids

    datamaps = {
        "user2id": {user_raw[k]: str(k + 1) for k in range(n_users)},
        "item2id": {item_raw[i]: str(item_id[i]) for i in order},
        "id2user": {str(k + 1): user_raw[k] for k in range(n_users)},
        "id2item": {str(item_id[i]): item_raw[i] for i in order},
        "attribute2id": attribute2id,
        "id2attribute": {str(v): a for a, v in attribute2id.items()},
        "attributeid2num": {str(v): attr_count[v] for v in attribute2id.values()},
    }
    (out / "datamaps.json").write_text(json.dumps(datamaps), encoding="utf-8", newline="\n")
    (out / "item2attributes.json").write_text(json.dumps(item2attributes), encoding="utf-8",
                                              newline="\n")

    # meta.json.gz
    gpop = np.argsort(-cat["pop"], kind="stable")
    sales_rank = np.empty(n_items, dtype=int)
    sales_rank[gpop] = np.arange(1, n_items + 1)
    meta_lines = []
    for i in order:
        c = _CATEGORIES[cat["cat"][i]]
        meta_lines.append(repr({
            "asin": item_raw[i],
            "title": cat["titles"][i][0],
            "price": float(cat["price"][i]),
            "salesRank": {"Beauty": int(sales_rank[i])},
            "brand": _BRANDS[cat["brand"][i]][0],
            "categories": [["Beauty"] + list(c[1])],
        }))
    buf = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=buf, mtime=0, compresslevel=9) as gz:
        gz.write(("\n".join(meta_lines) + "\n").encode("utf-8"))
    (out / "meta.json.gz").write_bytes(buf.getvalue())

    # exp_splits.pkl
    splits = _reviews(rng, users, seqs, cat, user_raw, item_raw)
    (out / "exp_splits.pkl").write_bytes(pickle.dumps(splits, protocol=4))
    return out
