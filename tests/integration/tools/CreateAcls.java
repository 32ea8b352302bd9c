// Creates ACLs through Kafka's Admin API (aiokafka has no ACL requests); run as a single-file Java program
// with the broker's jars on the classpath: java -cp 'libs/*' CreateAcls.java BOOTSTRAP < lines
// Each input line: PRINCIPAL RESOURCE_TYPE PATTERN_TYPE NAME OPERATION (e.g. User:x topic literal t Read).
import java.util.ArrayList;
import java.util.List;
import java.util.Properties;
import java.util.Scanner;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.common.acl.AccessControlEntry;
import org.apache.kafka.common.acl.AclBinding;
import org.apache.kafka.common.acl.AclOperation;
import org.apache.kafka.common.acl.AclPermissionType;
import org.apache.kafka.common.resource.PatternType;
import org.apache.kafka.common.resource.ResourcePattern;
import org.apache.kafka.common.resource.ResourceType;

public class CreateAcls {
    public static void main(String[] args) throws Exception {
        Properties props = new Properties();
        props.put("bootstrap.servers", args[0]);
        List<AclBinding> bindings = new ArrayList<>();
        Scanner in = new Scanner(System.in);
        while (in.hasNextLine()) {
            String[] f = in.nextLine().trim().split(" ");
            if (f.length != 5) continue;
            bindings.add(new AclBinding(
                new ResourcePattern(ResourceType.fromString(f[1]), f[3], PatternType.valueOf(f[2].toUpperCase())),
                new AccessControlEntry(f[0], "*", AclOperation.fromString(f[4].toUpperCase()), AclPermissionType.ALLOW)));
        }
        try (Admin admin = Admin.create(props)) {
            admin.createAcls(bindings).all().get();
        }
        System.out.println("created " + bindings.size());
    }
}
