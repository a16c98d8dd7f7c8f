from usmlite_edu.cli import main

raise SystemExit(main())
