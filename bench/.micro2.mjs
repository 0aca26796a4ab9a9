process.argv[2] = undefined;
