"""Categories, shops and items of both domains in the shared latent space.

Categories are unit vectors grouped under parent categories (children lie near their
parent, so interest spills over to related categories).  Items of the target ``shop``
domain (ids ``0 .. n_shop_items-1``) and of the source ``content`` domain (the ids after
them) never overlap but share the category centroids, so cross-domain transfer is
learnable.  Every item has a category, a shop (target domain only), a price bucket, a
quality, a Zipf popularity and a latent vector near its category centroid.  With
``n_topics`` > 0 every item also has a topic within its category, shared by both domains:
its latent leans ``topic_spread`` towards the topic's direction, so a content item and a
shop item of the same (category, topic) are closer than the category alone makes them.
With ``topic_level = "parent"`` a topic is a *tag* of a parent category: its direction is
shared by every category under the parent, so items of one tag in sibling categories are
alike beyond their categories.  ``Catalog.tag`` is the item's tag id, (category or parent)
x ``n_topics`` + topic: the id both domains share, which policies may read.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from simab.simulators.rng import generator
from simab.simulators.spec import WorldSpec
from simab.simulators.streams import Stream

#: Values of ``Catalog.domain``: the shop (target) domain and the content (source) domain.
DOMAIN_SHOP, DOMAIN_CONTENT = 0, 1
N_PRICE_BUCKETS = 5


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


@dataclass(frozen=True)
class Csr:
    """Items grouped by a key (category or shop), each group sorted by popularity."""

    offsets: np.ndarray
    items: np.ndarray

    def group(self, k: int) -> np.ndarray:
        return self.items[self.offsets[k] : self.offsets[k + 1]]

    def sizes(self) -> np.ndarray:
        return np.diff(self.offsets)


def _csr(keys: np.ndarray, ids: np.ndarray, logpop: np.ndarray, n_keys: int) -> Csr:
    order = np.lexsort((-logpop[ids], keys))
    counts = np.bincount(keys, minlength=n_keys)
    return Csr(np.concatenate([[0], np.cumsum(counts)]).astype(np.int64), ids[order].astype(np.int64))


@dataclass(frozen=True)
class Catalog:
    parent_of: np.ndarray  # [K]
    centroid: np.ndarray  # [K, d]
    shop_category: np.ndarray  # [S]
    domain: np.ndarray  # [I] 0 = shop (target), 1 = content (source)
    category: np.ndarray  # [I]
    shop: np.ndarray  # [I], -1 for content items
    price: np.ndarray  # [I] 0..4
    quality: np.ndarray  # [I]
    logpop: np.ndarray  # [I], log popularity (max 0)
    latent: np.ndarray  # [I, d]
    n_shop_items: int
    target_by_category: Csr
    content_by_category: Csr
    target_by_shop: Csr
    popular_target: np.ndarray  # target items by popularity, descending
    n_topics: int = 0
    topic: np.ndarray | None = None  # [I] topic within the category (n_topics > 0)
    topic_vec: np.ndarray | None = None  # [K or P, T, d] unit topic directions (topic_level)
    target_by_topic: Csr | None = None  # keyed category * T + topic
    content_by_topic: Csr | None = None
    tag: np.ndarray | None = None  # [I] (category or parent) * T + topic: the id both domains share (n_topics > 0)
    n_tags: int = 0

    @property
    def n_items(self) -> int:
        return int(self.domain.shape[0])

    @property
    def n_categories(self) -> int:
        return int(self.centroid.shape[0])

    @property
    def n_shops(self) -> int:
        return int(self.shop_category.shape[0])

    @classmethod
    def build(cls, spec: WorldSpec, seed: int) -> Catalog:
        rng = generator(seed, Stream.CATALOG, 0)
        d, K, P, S = spec.dim, spec.n_categories, spec.n_parents, spec.n_shops
        parents = _unit(rng.standard_normal((P, d)))
        parent_of = np.concatenate([np.arange(P), rng.integers(0, P, K - P)])
        centroid = _unit(parents[parent_of] + spec.category_spread * rng.standard_normal((K, d)) / np.sqrt(d) * 2)
        # category sizes are mildly skewed: a few big categories, a long tail
        cat_w = 1.0 / (1.0 + np.arange(K)) ** 0.6
        cat_w = cat_w[rng.permutation(K)]
        cat_w /= cat_w.sum()

        n_t, n_c = spec.n_shop_items, spec.n_content_items
        shop_category = rng.choice(K, size=S, p=cat_w)
        shop_w = 1.0 / (1.0 + np.arange(S)) ** 0.8
        shop_w = shop_w[rng.permutation(S)]
        shop_w /= shop_w.sum()
        t_shop = rng.choice(S, size=n_t, p=shop_w)
        # most of a shop's items are of the shop's category
        t_cat = np.where(rng.random(n_t) < 0.8, shop_category[t_shop], rng.choice(K, size=n_t, p=cat_w))
        # every category has at least one target item (search results must never be empty)
        t_cat[:K] = np.arange(K)
        c_cat = rng.choice(K, size=n_c, p=cat_w)
        c_cat[:K] = np.arange(K)

        category = np.concatenate([t_cat, c_cat]).astype(np.int64)
        domain = np.concatenate([np.full(n_t, DOMAIN_SHOP), np.full(n_c, DOMAIN_CONTENT)]).astype(np.int8)
        shop = np.concatenate([t_shop, np.full(n_c, -1)]).astype(np.int64)
        # Zipf popularity within each domain
        logpop = np.empty(n_t + n_c)
        logpop[:n_t] = -spec.zipf * np.log1p(rng.permutation(n_t))
        logpop[n_t:] = -spec.zipf * np.log1p(rng.permutation(n_c))
        logpop = (logpop - logpop.mean()) / max(logpop.std(), 1e-9)
        quality = rng.standard_normal(n_t + n_c)
        price = rng.integers(0, N_PRICE_BUCKETS, n_t + n_c)
        noise = spec.item_spread * rng.standard_normal((n_t + n_c, d)) / np.sqrt(d) * 2
        T = spec.n_topics
        topic = topic_vec = by_topic_t = by_topic_c = None
        if T:
            # topics have their own generator: the other catalog draws do not depend on them
            tg = generator(seed, Stream.CATALOG_TOPICS, 0)
            # a topic's direction: per category, or per parent (shared by its categories)
            owner = category if spec.topic_level == "category" else parent_of[category]
            topic_vec = _unit(tg.standard_normal((K if spec.topic_level == "category" else P, T, d)))
            topic = tg.integers(0, T, n_t + n_c)
            latent = _unit(centroid[category] + spec.topic_spread * topic_vec[owner, topic] + noise)
        else:
            latent = _unit(centroid[category] + noise)

        ids_t = np.arange(n_t)
        ids_c = np.arange(n_t, n_t + n_c)
        if T:
            key = category * T + topic
            by_topic_t = _csr(key[ids_t], ids_t, logpop, K * T)
            by_topic_c = _csr(key[ids_c], ids_c, logpop, K * T)
        return cls(
            parent_of=parent_of,
            centroid=centroid,
            shop_category=shop_category,
            domain=domain,
            category=category,
            shop=shop,
            price=price.astype(np.int64),
            quality=quality,
            logpop=logpop,
            latent=latent.astype(np.float64),
            n_shop_items=n_t,
            target_by_category=_csr(category[ids_t], ids_t, logpop, K),
            content_by_category=_csr(category[ids_c], ids_c, logpop, K),
            target_by_shop=_csr(shop[ids_t], ids_t, logpop, S),
            popular_target=ids_t[np.argsort(-logpop[ids_t], kind="stable")],
            n_topics=T,
            topic=topic,
            topic_vec=topic_vec,
            target_by_topic=by_topic_t,
            content_by_topic=by_topic_c,
            tag=None if T == 0 else (owner * T + topic).astype(np.int64),
            n_tags=0 if T == 0 else (K if spec.topic_level == "category" else P) * T,
        )
