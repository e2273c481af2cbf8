from flowmonkey_celery.cli import main

main()
