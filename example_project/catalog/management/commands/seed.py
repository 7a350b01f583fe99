"""``manage.py seed``: generates users, categories and products (deterministic for a given --seed)."""

import random
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from django.contrib.auth import get_user_model
from django.contrib.auth.hashers import make_password
from django.core.management.base import BaseCommand
from django.db import transaction

from catalog.models import Category, Product

WORDS = (
    "steel oak walnut cotton linen wool leather ceramic glass copper brass marble bamboo rubber "
    "portable compact foldable durable waterproof handmade vintage modern classic rustic minimal "
    "kitchen garden office travel outdoor bedroom bathroom studio workshop library balcony "
    "lamp chair table shelf mug kettle blanket pillow backpack bottle planter clock mirror rug "
    "quiet bright warm soft sturdy light heavy smooth matte glossy elegant practical everyday"
).split()
CATEGORIES = ["Kitchen", "Garden", "Office", "Travel", "Bedroom", "Bathroom", "Studio", "Outdoor"]
USERS = ["alice", "bob", "carol", "dave", "erin"]
PASSWORD = "multicore"


def description(rng: random.Random) -> str:
    sentences = []
    for _ in range(rng.randint(6, 10)):
        words = rng.choices(WORDS, k=rng.randint(8, 16))
        sentences.append(" ".join(words).capitalize() + ".")
    return " ".join(sentences)


class Command(BaseCommand):
    help = "Creates demo users (password 'multicore'), categories and products."

    def add_arguments(self, parser):
        parser.add_argument("--products", type=int, default=3000)
        parser.add_argument("--seed", type=int, default=42)
        parser.add_argument("--flush", action="store_true", help="delete existing catalog data first")

    @transaction.atomic
    def handle(self, *args, products: int, seed: int, flush: bool, **options):
        if products < 0:
            self.stderr.write("--products must be >= 0")
            raise SystemExit(2)
        if flush:
            Product.objects.all().delete()
            Category.objects.all().delete()
        if Product.objects.exists():
            self.stdout.write(f"catalog already seeded ({Product.objects.count()} products); use --flush to redo")
            return
        rng = random.Random(seed)
        User = get_user_model()
        hashed = make_password(PASSWORD)
        users = [User.objects.update_or_create(username=name, defaults={"password": hashed})[0] for name in USERS]
        categories = Category.objects.bulk_create(Category(name=name, slug=name.lower()) for name in CATEGORIES)
        start = datetime(2024, 1, 1, tzinfo=UTC)
        Product.objects.bulk_create(
            (
                Product(
                    name=f"{rng.choice(WORDS).capitalize()} {rng.choice(WORDS)} {i}",
                    sku=f"SKU-{i:06d}",
                    description=description(rng),
                    price=Decimal(rng.randint(100, 99_999)) / 100,
                    stock=rng.randint(0, 500),
                    category=rng.choice(categories),
                    owner=rng.choice(users),
                    created=start + timedelta(minutes=i // 3),  # groups of three share a timestamp
                )
                for i in range(products)
            ),
            batch_size=500,
        )
        self.stdout.write(f"seeded {len(users)} users, {len(categories)} categories, {products} products")
