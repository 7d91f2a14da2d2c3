"""./dct token [--user U]"""

from rest_framework.authtoken.models import Token

from dctoolkit.cli import DctCommand


class Command(DctCommand):
    help = "Print the user's API token, creating it when missing (use it as DCT_TOKEN)."
    json_option = False

    def add_arguments(self, parser):
        parser.add_argument("--renew", action="store_true", help="replace the token with a new one")

    def handle(self, *args, **options):
        user = self.acting_user()
        if options["renew"]:
            Token.objects.filter(user=user).delete()
        token, _ = Token.objects.get_or_create(user=user)
        self.stdout.write(token.key)
