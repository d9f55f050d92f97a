from bot.schemas import main

main()
