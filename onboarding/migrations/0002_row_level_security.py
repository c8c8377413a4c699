from django.db import migrations

from voxanne.tenancy import enable_row_level_security

APPEND_ONLY = """
CREATE FUNCTION onboarding_event_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'onboarding events are append-only' USING ERRCODE = 'integrity_constraint_violation';
END $$;
CREATE TRIGGER onboarding_event_append_only BEFORE UPDATE ON onboarding_onboardingevent
    FOR EACH ROW EXECUTE FUNCTION onboarding_event_append_only();
"""


class Migration(migrations.Migration):
    dependencies = [("onboarding", "0001_initial")]

    operations = [
        enable_row_level_security("onboarding_onboardingevent"),
        # DELETE stays possible: an org's events go when the org is deleted (CASCADE).
        migrations.RunSQL(
            APPEND_ONLY,
            "DROP TRIGGER onboarding_event_append_only ON onboarding_onboardingevent;"
            "DROP FUNCTION onboarding_event_append_only();",
        ),
    ]
