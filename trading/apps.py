"""AppConfigs that give Django's own apps (and django-axes) the MongoDB ObjectId primary key.

This is the django-mongodb-backend project template's recipe: with these and
MIGRATION_MODULES pointing at trading/mongo_migrations, admin, auth,
contenttypes and axes migrate on MongoDB (`migrate` runs the backend's
mongodb.E001 check, which refuses an AutoField primary key).
"""

from axes.apps import AppConfig as AxesConfig
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


class MongoAxesConfig(AxesConfig):
    default_auto_field = OBJECT_ID_FIELD
