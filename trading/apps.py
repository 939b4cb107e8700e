"""AppConfigs that give Django's own apps the MongoDB ObjectId primary key.

This is the django-mongodb-backend project template's recipe: with these and
MIGRATION_MODULES pointing at trading/mongo_migrations, admin, auth and
contenttypes migrate on MongoDB.
"""

from django.contrib.admin.apps import AdminConfig
from django.contrib.auth.apps import AuthConfig
from django.contrib.contenttypes.apps import ContentTypesConfig

OBJECT_ID_FIELD = "django_mongodb_backend.fields.ObjectIdAutoField"


class MongoAdminConfig(AdminConfig):
    default_auto_field = OBJECT_ID_FIELD


class MongoAuthConfig(AuthConfig):
    default_auto_field = OBJECT_ID_FIELD


class MongoContentTypesConfig(ContentTypesConfig):
    default_auto_field = OBJECT_ID_FIELD
