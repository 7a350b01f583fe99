"""Step 1 of 3 of a backfill (docs/batch.md): a nullable column. Step 2 is
``manage.py runbatch catalog-quality``; a constraint (NOT NULL, an index) would be step 3."""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("catalog", "0001_initial")]

    operations = [
        migrations.AddField(model_name="product", name="quality", field=models.IntegerField(null=True, blank=True))
    ]
